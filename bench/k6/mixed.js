// Scenario 5, mixed with status: each iteration checks out its own item, buys it, and reads /status every
// fifth iteration.
//   k6 run -e BASE=http://127.0.0.1:8080 --vus 64 --duration 30s bench/k6/mixed.js
// k6 exits non-zero when a threshold fails: every check must pass, and nothing may be refused by admission
// control (429 rate_limited: the request was never decided) or answered 5xx.
import http from "k6/http"
import exec from "k6/execution"
import { check } from "k6"
import { Counter } from "k6/metrics"

const BASE = __ENV.BASE || "http://127.0.0.1:8080"
const ITEMS = Number(__ENV.SALE_ITEMS || 10000)
export const options = {
  vus: 10,
  duration: "30s",
  thresholds: { checks: ["rate==1"], http_req_failed: ["rate<0.001"], rate_limited: ["count==0"] },
}
const rateLimited = new Counter("rate_limited")

const decided = (r) => r.status === 200 || r.status === 404 || r.status === 409 || (r.status === 429 && r.json("error") === "user_limit")

export default function () {
  // Unique across every VU and iteration, whatever --vus says, so that users never collide.
  const n = exec.scenario.iterationInTest
  const item = 1 + (n % ITEMS)
  const held = http.post(`${BASE}/checkout?user_id=vu-${n}&id=item${item}`)
  if (held.status === 429 && held.json("error") === "rate_limited") rateLimited.add(1)
  check(held, { "checkout decided": decided })
  if (held.status === 200) {
    const bought = http.post(`${BASE}/purchase?code=${held.json("code")}`)
    check(bought, { "purchase succeeded": (r) => r.status === 200 })
  }
  if (n % 5 === 0) {
    const status = http.get(`${BASE}/status`)
    check(status, { "status ok": (r) => r.status === 200 && r.json("items_sold") <= r.json("items_total") })
  }
}
