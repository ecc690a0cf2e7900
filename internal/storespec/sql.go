package storespec

import (
	"context"
	"errors"
	"fmt"
)

// openSQL is replaced when the sql store lands in this tree.
func openSQL(_ context.Context, spec string, _ Env) (*Opened, error) {
	return nil, fmt.Errorf("store spec %q: %w", Redact(spec), errors.ErrUnsupported)
}
