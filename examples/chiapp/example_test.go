package chiapp_test

import (
	"fmt"
	"log"
	"net/http/httptest"
	"net/url"

	"github.com/roamsession/roam/examples/chiapp"
	"github.com/roamsession/roam/examples/internal/browser"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
)

func Example() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	sessions, err := session.NewManager(store, session.Options{
		Cookie: session.CookieOptions{Insecure: true}, // httptest serves plain http
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(chiapp.New(sessions))
	defer srv.Close()

	b := browser.New(srv.URL)
	fmt.Println(b.Get("/me"))
	fmt.Println(b.Post("/login", url.Values{"username": {"alice"}, "password": {"secret"}}))
	fmt.Println(b.Post("/cart/apple", url.Values{}))
	fmt.Println(b.Post("/cart/pear", url.Values{}))
	fmt.Println(b.Get("/me"))
	fmt.Println(b.Post("/logout", url.Values{}))
	fmt.Println(b.Post("/cart/plum", url.Values{}))
	// Output:
	// 401 not logged in
	// 200 welcome alice
	// 200 cart: [apple]
	// 200 cart: [apple pear]
	// 200 hello alice
	// 200 bye
	// 401 not logged in
}
