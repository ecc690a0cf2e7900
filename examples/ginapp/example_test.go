package ginapp_test

import (
	"fmt"
	"log"
	"net/http/httptest"
	"net/url"

	"github.com/gin-gonic/gin"
	"github.com/roamsession/roam/examples/ginapp"
	"github.com/roamsession/roam/examples/internal/browser"
	"github.com/roamsession/roam/session"
	"github.com/roamsession/roam/store/memstore"
)

func Example() {
	gin.SetMode(gin.ReleaseMode) // no route listing on stdout
	store := memstore.New(memstore.Options{})
	defer store.Close()
	sessions, err := session.NewManager(store, session.Options{
		Cookie: session.CookieOptions{Insecure: true}, // httptest serves plain http
	})
	if err != nil {
		log.Fatal(err)
	}
	srv := httptest.NewServer(ginapp.New(sessions))
	defer srv.Close()

	b := browser.New(srv.URL)
	fmt.Println(b.Get("/me"))
	fmt.Println(b.Post("/login", url.Values{"username": {"alice"}, "password": {"secret"}}))
	fmt.Println(b.Get("/me"))
	fmt.Println(b.Get("/ticks"))
	fmt.Println(b.Post("/logout", url.Values{}))
	fmt.Println(b.Get("/me"))
	// Output:
	// 401 {"error":"not logged in"}
	// 200 welcome alice
	// 200 {"user":"alice"}
	// 200 tick 1
	// tick 2
	// tick 3
	// 200 bye
	// 401 {"error":"not logged in"}
}
