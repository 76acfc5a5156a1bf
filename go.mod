module sanlock-msg

go 1.26.0

require (
	github.com/ncw/directio v1.0.5 // indirect
	github.com/spf13/pflag v1.1.0 // indirect
	golang.org/x/sys v0.50.0 // indirect
)
