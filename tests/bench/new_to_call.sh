#!/bin/sh
# The time from `moonwire new --proto` to the first successful `moonwire
# call` (serve in the background, wait for its port), five runs, sorted:
# the third line is the median. MOONWIRE_BIN: the binary (default build/).
set -e
root=$(cd "$(dirname "$0")/../.." && pwd)
B=${MOONWIRE_BIN:-$root/build/moonwire}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT; cd "$tmp"
cp "$root/examples/helloworld/helloworld.proto" .
for i in 1 2 3 4 5; do
  t0=$(date +%s.%N)
  "$B" new svc$i --proto helloworld.proto >/dev/null
  "$B" serve --listen 127.0.0.1:0 svc$i > out$i 2>/dev/null &
  pid=$!
  until grep -q '^listening on' out$i; do sleep 0.01; done
  "$B" call "$(sed -n 's/^listening on //p' out$i)" helloworld.Greeter/SayHello '{"name":"a"}' >/dev/null
  t1=$(date +%s.%N)
  kill $pid; wait $pid 2>/dev/null || true
  echo "$t1 - $t0" | bc
done | sort -n
