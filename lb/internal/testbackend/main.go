// Command testbackend is the tiny backend the lb tests start as a real
// process, so that a test can SIGKILL it. Every response carries
// X-Roam-Node: <id>.
//
//	GET  /               "hello from <id>"; sets roam_session when absent
//	GET  /healthz        200, or 503 after POST /sick
//	POST /sick, /well    fail or pass health checks from now on
//	GET  /echo           JSON: method, host, headers, body length
//	GET  /slow?ms=N      answers after N ms
//	ANY  /hang           never answers (until killed); counted in /stats
//	GET  /stream?n=N&ms=M N chunks, one every M ms, flushed
//	GET  /status?code=C  answers status C
//	GET  /ws             WebSocket echo
//	GET  /stats          JSON: requests per path
package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/websocket"
)

func main() {
	id := flag.String("id", "b", "node id sent in X-Roam-Node")
	listen := flag.String("listen", "127.0.0.1:0", "listen address")
	flag.Parse()

	var mu sync.Mutex
	stats := map[string]int{}
	var sick bool
	count := func(p string) {
		mu.Lock()
		stats[p]++
		mu.Unlock()
	}

	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		count("/")
		if _, err := r.Cookie("roam_session"); err != nil {
			b := make([]byte, 16)
			rand.Read(b)
			http.SetCookie(w, &http.Cookie{Name: "roam_session", Value: hex.EncodeToString(b), Path: "/", HttpOnly: true})
		}
		fmt.Fprintf(w, "hello from %s\n", *id)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		s := sick
		mu.Unlock()
		if s {
			http.Error(w, "sick", http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("POST /sick", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sick = true
		mu.Unlock()
	})
	mux.HandleFunc("POST /well", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sick = false
		mu.Unlock()
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		count("/echo")
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{
			"method": r.Method, "host": r.Host, "headers": r.Header, "body_len": n, "remote": r.RemoteAddr,
		})
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		count("/slow")
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "slow from %s\n", *id)
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		count("/hang")
		<-r.Context().Done()
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		count("/stream")
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		w.Header().Set("Content-Type", "text/plain")
		for i := 0; i < n; i++ {
			fmt.Fprintf(w, "chunk %d\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-r.Context().Done():
				return
			}
		}
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		count("/status")
		c, err := strconv.Atoi(r.URL.Query().Get("code"))
		if err != nil {
			c = 200
		}
		w.WriteHeader(c)
		fmt.Fprintf(w, "status %d from %s\n", c, *id)
	})
	mux.Handle("/ws", websocket.Handler(func(c *websocket.Conn) {
		count("/ws")
		io.Copy(c, c)
	}))
	mux.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		json.NewEncoder(w).Encode(stats)
	})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Roam-Node", *id)
		mux.ServeHTTP(w, r)
	})

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	// The parent reads this line to learn the address (port 0 picks one).
	fmt.Fprintf(os.Stdout, "listening %s\n", ln.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.Serve(ln))
}
