package bootstrap

import "context"

// migrateLegacy runs the legacy state migration preset under home and returns
// its warnings. Placeholder until internal/statemigrate lands: it validates
// nothing and migrates nothing.
func migrateLegacy(ctx context.Context, preset, home string) ([]string, error) {
	return nil, nil
}
