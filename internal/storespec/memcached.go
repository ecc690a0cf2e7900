package storespec

import (
	"context"
	"errors"
	"fmt"
)

// openMemcached is replaced when the memcached store lands in this tree.
func openMemcached(_ context.Context, spec string, _ Env) (*Opened, error) {
	return nil, fmt.Errorf("store spec %q: %w", Redact(spec), errors.ErrUnsupported)
}
