package echoapp_test

import (
	"fmt"
	"log"
	"net/http/httptest"
	"net/url"

	"github.com/roamsession/roam/examples/echoapp"
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
	srv := httptest.NewServer(echoapp.New(sessions))
	defer srv.Close()

	b := browser.New(srv.URL)
	fmt.Println(b.Get("/me"))
	fmt.Println(b.Post("/login", url.Values{"username": {"alice"}, "password": {"wrong"}}))
	fmt.Println(b.Post("/login", url.Values{"username": {"alice"}, "password": {"secret"}}))
	fmt.Println(b.Get("/me"))
	fmt.Println(b.Post("/logout", url.Values{}))
	fmt.Println(b.Get("/me"))
	// Output:
	// 401 {"message":"not logged in"}
	// 401 {"message":"wrong username or password"}
	// 200 welcome alice
	// 200 {"failed_logins":1,"user":"alice"}
	// 200 bye
	// 401 {"message":"not logged in"}
}
