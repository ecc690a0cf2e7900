package stores_test

import (
	"context"
	"database/sql"
	"log"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	"github.com/redis/go-redis/v9"
	"github.com/roamsession/roam/cluster"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memcachedstore"
	"github.com/roamsession/roam/store/memstore"
	"github.com/roamsession/roam/store/redisstore"
	"github.com/roamsession/roam/store/sqlstore"
)

func Example_memory() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	sessions, err := session.NewManager(store, session.Options{})
	if err != nil {
		log.Fatal(err)
	}
	_ = sessions
}

func Example_redis() {
	ctx := context.Background()
	// redis.NewFailoverClient for Sentinel, redis.NewClusterClient for Cluster.
	rdb := redis.NewClient(&redis.Options{Addr: "redis:6379"})
	defer rdb.Close() // after the last use of the store
	store, err := redisstore.New(ctx, rdb, redisstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	sessions, err := session.NewManager(store, session.Options{})
	if err != nil {
		log.Fatal(err)
	}
	_ = sessions
}

func Example_postgres() {
	ctx := context.Background()
	db, err := sql.Open("pgx", "postgres://app@db/app")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	store, err := sqlstore.New(db, sqlstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close() // stops the cleanup loop; db stays open

	// Creates the tables once.
	if err := store.Migrate(ctx); err != nil {
		log.Fatal(err)
	}
	sessions, err := session.NewManager(store, session.Options{})
	if err != nil {
		log.Fatal(err)
	}
	_ = sessions
}

func Example_memcached() {
	mc, _, err := memcachedstore.NewClient([]string{"mc1:11211", "mc2:11211"}, memcachedstore.ClientOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer mc.Close()
	store, err := memcachedstore.New(mc, memcachedstore.Options{})
	if err != nil {
		log.Fatal(err)
	}
	sessions, err := session.NewManager(store, session.Options{})
	if err != nil {
		log.Fatal(err)
	}
	_ = sessions
}

func Example_cluster() {
	ctx := context.Background()
	secret := []byte("the same secret on every node")
	store, err := cluster.New(ctx, cluster.Config{
		NodeID: "n1",                       // unique and stable across restarts
		Bind:   "10.0.0.11:7946",           // gossip; replication on port + 1
		Seeds:  []string{"10.0.0.12:7946"}, // any live member
		Secret: secret,                     // encrypts gossip, authenticates replication
		Mode:   cluster.ModeBackup,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close(ctx) // hands this node's sessions to its peers
	sessions, err := session.NewManager(store, session.Options{})
	if err != nil {
		log.Fatal(err)
	}
	_ = sessions
}
