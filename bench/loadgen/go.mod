module streamer/bench/loadgen

go 1.22
