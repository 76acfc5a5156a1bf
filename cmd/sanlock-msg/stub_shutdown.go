package main

import "context"

// Placeholder until the verb is implemented; delete this file then.
func runShutdown(ctx context.Context, e *env, args []string) int {
	return fail(e, "shutdown", errNotImplemented)
}
