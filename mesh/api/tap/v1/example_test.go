package tapv1_test

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	tapv1 "github.com/skiff-mesh/skiff/mesh/api/tap/v1"
)

// A tap client prints each event by kind; the events of one request share
// its request_id.
func Example() {
	events := []*tapv1.TapEvent{
		{RequestId: 7, Direction: tapv1.Direction_DIRECTION_OUTBOUND, Kind: &tapv1.TapEvent_RequestInit{
			RequestInit: &tapv1.RequestInit{Method: "GET", Authority: "web:8080", Path: "/api/cart"},
		}},
		{RequestId: 7, Kind: &tapv1.TapEvent_ResponseInit{
			ResponseInit: &tapv1.ResponseInit{HttpStatus: 200, SinceRequestInit: durationpb.New(3 * time.Millisecond)},
		}},
		{RequestId: 7, Tls: tapv1.TlsStatus_TLS_STATUS_ESTABLISHED, Kind: &tapv1.TapEvent_ResponseEnd{
			ResponseEnd: &tapv1.ResponseEnd{HttpStatus: 200, Latency: durationpb.New(4 * time.Millisecond), ResponseBytes: 512},
		}},
	}
	for _, ev := range events {
		switch k := ev.GetKind().(type) {
		case *tapv1.TapEvent_RequestInit:
			fmt.Println(ev.GetRequestId(), "req", k.RequestInit.GetMethod(), k.RequestInit.GetAuthority()+k.RequestInit.GetPath())
		case *tapv1.TapEvent_ResponseInit:
			fmt.Println(ev.GetRequestId(), "rsp", k.ResponseInit.GetHttpStatus(), k.ResponseInit.GetSinceRequestInit().AsDuration())
		case *tapv1.TapEvent_ResponseEnd:
			fmt.Println(ev.GetRequestId(), "end", k.ResponseEnd.GetLatency().AsDuration(), k.ResponseEnd.GetResponseBytes(), "bytes tls", ev.GetTls() == tapv1.TlsStatus_TLS_STATUS_ESTABLISHED)
		}
	}
	// Output:
	// 7 req GET web:8080/api/cart
	// 7 rsp 200 3ms
	// 7 end 4ms 512 bytes tls true
}
