package servers

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// The harness speaks just enough RESP (the Redis protocol) to ping servers,
// ask sentinels and read CLUSTER INFO, so that it does not depend on a
// client library's retry and logging behaviour while servers come and go.

// respTimeout bounds one command when ctx has no earlier deadline.
const respTimeout = 2 * time.Second

// respError is an error reply ("-ERR …") from the server.
type respError string

func (e respError) Error() string { return "redis: " + string(e) }

// respDo sends one command to addr on a fresh connection and returns the
// reply: string (simple or bulk), int64, nil (null), []any (array), or an
// error (respError for an error reply).
func respDo(ctx context.Context, addr string, args ...string) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, respTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return nil, err
	}
	return readReply(bufio.NewReader(c), 0)
}

func readReply(r *bufio.Reader, depth int) (any, error) {
	if depth > 8 {
		return nil, errors.New("redis: reply nested too deeply")
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return nil, errors.New("redis: empty reply line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, respError(body)
	case ':':
		return strconv.ParseInt(body, 10, 64)
	case '$':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > 64<<20 {
			return nil, fmt.Errorf("redis: bad bulk length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return nil, err
		}
		return string(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		if err != nil || n < -1 || n > 1<<20 {
			return nil, fmt.Errorf("redis: bad array length %q", body)
		}
		if n == -1 {
			return nil, nil
		}
		out := make([]any, n)
		for i := range out {
			// An error nested in an array is data here, not a failure.
			v, err := readReply(r, depth+1)
			var re respError
			if errors.As(err, &re) {
				v, err = re, nil
			}
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	default:
		return nil, fmt.Errorf("redis: unexpected reply %q", line)
	}
}

// respString runs a command whose reply is a string.
func respString(ctx context.Context, addr string, args ...string) (string, error) {
	v, err := respDo(ctx, addr, args...)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("redis: %s: reply %v is not a string", args[0], v)
	}
	return s, nil
}

// respInfo runs INFO (or CLUSTER INFO) and returns its "key:value" lines.
func respInfo(ctx context.Context, addr string, args ...string) (map[string]string, error) {
	s, err := respString(ctx, addr, args...)
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && !strings.HasPrefix(k, "#") {
			m[k] = v
		}
	}
	return m, nil
}

// respMap turns a flat [k1, v1, k2, v2, …] reply into a map.
func respMap(v any) map[string]string {
	arr, _ := v.([]any)
	m := map[string]string{}
	for i := 0; i+1 < len(arr); i += 2 {
		k, _ := arr[i].(string)
		val, _ := arr[i+1].(string)
		m[k] = val
	}
	return m
}

// redisPing succeeds when addr answers PING with PONG (not, for example,
// -LOADING while it reads its data file).
func redisPing(ctx context.Context, addr string) error {
	s, err := respString(ctx, addr, "PING")
	if err != nil {
		return err
	}
	if s != "PONG" {
		return fmt.Errorf("redis: PING answered %q", s)
	}
	return nil
}
