package storespec

import (
	"context"

	"github.com/roamsession/roam/store/memstore"
)

func openMemory(_ context.Context, _ Env) (*Opened, error) {
	s := memstore.New(memstore.Options{})
	return &Opened{Store: s, Kind: "memory", Close: func(context.Context) error { return s.Close() }}, nil
}
