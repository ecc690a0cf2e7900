package nethttpapp_test

import (
	"fmt"
	"log"
	"net/http/httptest"
	"net/url"

	"github.com/roamsession/roam/examples/internal/browser"
	"github.com/roamsession/roam/examples/nethttpapp"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
)

func Example() {
	store := memstore.New(memstore.Options{})
	defer store.Close()
	sessions, err := session.NewManager(store, session.Options{
		// httptest serves plain http; in production keep the Secure default.
		Cookie: session.CookieOptions{Insecure: true},
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(nethttpapp.New(sessions))
	defer srv.Close()

	b := browser.New(srv.URL)
	fmt.Println(b.Get("/me"))
	fmt.Println(b.Post("/login", url.Values{"username": {"alice"}, "password": {"secret"}}))
	fmt.Println(b.Get("/me"))
	fmt.Println(b.Post("/logout", url.Values{}))
	fmt.Println(b.Get("/me"))
	// Output:
	// 401 not logged in
	// 200 welcome alice
	// 200 hello alice
	// 200 bye
	// 401 not logged in
}
