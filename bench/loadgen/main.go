// Command loadgen sends single-event POST /v1/score requests to `streamer serve` in an open
// loop: Poisson arrivals at -rate per second for -seconds, each request on its own goroutine,
// over a pool of keep-alive connections. It prints one JSON object: client-side latency
// (send to last byte of the response) and the server's own (its Server-Timing app;dur)
// percentiles, the rate achieved, and how many requests left more than 5 ms late.
//
// It is written in Go so that the load generator, which shares this machine's cores with
// the server, adds as little of its own delay to the client-side figures as it can.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand"
	"net/http"
	"net/http/httptrace"
	"os"
	"regexp"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

var serverTiming = regexp.MustCompile(`app;dur=([0-9.]+)`)

type sample struct{ client, server float64 }

func main() {
	url := flag.String("url", "", "the endpoint, e.g. http://127.0.0.1:8080/v1/score")
	bodies := flag.String("bodies", "", "a file of request bodies, one JSON event per line")
	rate := flag.Float64("rate", 500, "requests per second (Poisson arrivals)")
	seconds := flag.Float64("seconds", 10, "how long to send")
	flag.Parse()
	payloads, err := readLines(*bodies)
	if err != nil || len(payloads) == 0 || *url == "" {
		fmt.Fprintln(os.Stderr, "loadgen: give -url and -bodies (a file of JSON lines):", err)
		os.Exit(2)
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 1024, IdleConnTimeout: 2 * time.Second}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	var opened, failed atomic.Int64
	var mu sync.Mutex
	var samples []sample
	var wg sync.WaitGroup
	one := func(body []byte) {
		defer wg.Done()
		trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			if !info.Reused {
				opened.Add(1)
			}
		}}
		req, _ := http.NewRequest("POST", *url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			failed.Add(1)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		elapsed := float64(time.Since(start).Microseconds()) / 1000
		server := -1.0
		if m := serverTiming.FindStringSubmatch(resp.Header.Get("Server-Timing")); m != nil {
			server, _ = strconv.ParseFloat(m[1], 64)
		}
		if resp.StatusCode != 200 {
			failed.Add(1)
			return
		}
		mu.Lock()
		samples = append(samples, sample{elapsed, server})
		mu.Unlock()
	}
	rng := rand.New(rand.NewSource(1))
	n := int(*rate * *seconds)
	late := 0
	start := time.Now()
	due := time.Duration(0)
	for i := 0; i < n; i++ {
		due += time.Duration(rng.ExpFloat64() / *rate * float64(time.Second))
		if wait := due - time.Since(start); wait > 0 {
			time.Sleep(wait)
		} else if wait < -5*time.Millisecond {
			late++
		}
		wg.Add(1)
		go one(payloads[i%len(payloads)])
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	clients, servers := make([]float64, 0, len(samples)), make([]float64, 0, len(samples))
	for _, s := range samples {
		clients = append(clients, s.client)
		servers = append(servers, s.server)
	}
	out := map[string]any{
		"requests":           len(samples),
		"failed":             failed.Load(),
		"achieved_rps":       round(float64(len(samples))/elapsed, 1),
		"sent_late_over_5ms": late,
		"connections_opened": opened.Load(),
		"client_ms":          percentiles(clients),
		"server_ms":          percentiles(servers),
	}
	_ = json.NewEncoder(os.Stdout).Encode(out)
}

func percentiles(values []float64) map[string]float64 {
	if len(values) == 0 {
		return nil
	}
	sort.Float64s(values)
	at := func(q float64) float64 { return round(values[int(q*float64(len(values)-1)+0.5)], 3) }
	return map[string]float64{"p50": at(0.50), "p99": at(0.99), "max": at(1)}
}

func round(v float64, digits int) float64 {
	scale := 1.0
	for i := 0; i < digits; i++ {
		scale *= 10
	}
	return float64(int64(v*scale+0.5)) / scale
}

func readLines(path string) ([][]byte, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var lines [][]byte
	scanner := bufio.NewScanner(file)
	scanner.Buffer(make([]byte, 1<<20), 1<<20)
	for scanner.Scan() {
		if len(scanner.Bytes()) > 0 {
			lines = append(lines, append([]byte(nil), scanner.Bytes()...))
		}
	}
	return lines, scanner.Err()
}
