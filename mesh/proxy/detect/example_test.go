package detect_test

import (
	"bufio"
	"fmt"
	"net"
	"time"

	"github.com/skiff-mesh/skiff/mesh/proxy/detect"
)

// Detect peeks; the same bufio.Reader then serves the connection.
func Example() {
	srv, cli := net.Pipe()
	defer srv.Close()
	go func() {
		cli.Write([]byte("GET /healthz HTTP/1.1\r\nHost: svc\r\n\r\n"))
		cli.Close()
	}()

	r := bufio.NewReader(srv)
	p, why, err := detect.Detect(r, srv, time.Second)
	if err != nil {
		fmt.Println("close:", err)
		return
	}
	fmt.Printf("%v %q\n", p, why)
	line, _ := r.ReadString('\n') // nothing was consumed
	fmt.Printf("%q\n", line)
	// Output:
	// http1 ""
	// "GET /healthz HTTP/1.1\r\n"
}

func ExampleClassify() {
	for _, b := range []string{"", "PO", "POST /x HTTP/1.1", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "\x16\x03\x01"} {
		fmt.Println(detect.Classify([]byte(b)))
	}
	// Output:
	// unknown
	// unknown
	// http1
	// http2
	// tls
}
