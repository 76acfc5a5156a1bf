module github.com/sanlock-msg/sanlock-msg

go 1.26.0

require (
	github.com/ncw/directio v1.0.5
	github.com/spf13/pflag v1.1.0
	golang.org/x/sys v0.50.0
)

require github.com/hanwen/go-fuse/v2 v2.12.1
