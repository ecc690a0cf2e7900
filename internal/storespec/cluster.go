package storespec

import (
	"context"
	"errors"
	"fmt"
)

// openCluster is replaced when the cluster store lands in this tree.
func openCluster(_ context.Context, mode string, _ Env) (*Opened, error) {
	return nil, fmt.Errorf("store spec %q: %w", Redact(mode), errors.ErrUnsupported)
}
