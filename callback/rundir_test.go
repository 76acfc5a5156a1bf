package callback_test

import (
	"testing"

	"github.com/sanlock-msg/sanlock-msg/callback"
)

func TestResolveRunDir(t *testing.T) {
	env := func(v string) func(string) string {
		return func(k string) string {
			if k == callback.EnvRunDir {
				return v
			}
			return ""
		}
	}
	tests := []struct {
		name, flag, env, want string
	}{
		{"flag wins", "/a", "/b", "/a"},
		{"environment", "", "/b", "/b"},
		{"default", "", "", callback.DefaultRunDir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := callback.ResolveRunDir(tt.flag, env(tt.env)); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
