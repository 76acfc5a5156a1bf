package watchdog

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

func TestRoundTimeout(t *testing.T) {
	tests := []struct {
		name string
		d    time.Duration
		want int
	}{
		{name: "negative", d: -time.Second, want: 1},
		{name: "zero", d: 0, want: 1},
		{name: "one ns", d: 1, want: 1},
		{name: "one second", d: time.Second, want: 1},
		{name: "just over", d: time.Second + 1, want: 2},
		{name: "sixty", d: time.Minute, want: 60},
		{name: "huge", d: 1<<63 - 1, want: 9223372037},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := roundTimeout(tt.d); got != tt.want {
				t.Errorf("roundTimeout(%v) = %d, want %d", tt.d, got, tt.want)
			}
		})
	}
}

func TestDetailError(t *testing.T) {
	cause := errors.New("cause")
	err := fmt.Errorf("outer: %w", &detailError{msg: "watchdog: text", sentinel: ErrBusy, cause: cause})
	if !errors.Is(err, ErrBusy) || !errors.Is(err, cause) {
		t.Errorf("%v does not match both its sentinel and its cause", err)
	}
	if err.Error() != "outer: watchdog: text" {
		t.Errorf("Error() = %q", err)
	}
}

func TestUnixMilli(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{t: time.Unix(1732640000, 123456789), want: "1732640000.123"},
		{t: time.Unix(5, 0), want: "5.000"},
		{t: time.Unix(-1, 500e6), want: "-1.500"},
	}
	for _, tt := range tests {
		if got := unixMilli(tt.t); got != tt.want {
			t.Errorf("unixMilli(%v) = %q, want %q", tt.t, got, tt.want)
		}
	}
}
