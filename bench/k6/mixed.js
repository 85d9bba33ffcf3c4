// Scenario 5, mixed with status: each virtual user checks out its own item, buys it, and reads
// /status every few iterations.
//   k6 run -e BASE=http://127.0.0.1:8080 -e VUS=10 -e DURATION=30s bench/k6/mixed.js
import http from "k6/http"
import { check } from "k6"

const BASE = __ENV.BASE || "http://127.0.0.1:8080"
const ITEMS = Number(__ENV.SALE_ITEMS || 10000)
export const options = { vus: Number(__ENV.VUS || 10), duration: __ENV.DURATION || "30s" }

export default function () {
  const item = 1 + ((__VU - 1 + __ITER * options.vus) % ITEMS)
  const held = http.post(`${BASE}/checkout?user_id=vu${__VU}-${__ITER}&id=item${item}`)
  check(held, { "checkout answered": (r) => [200, 409, 429].includes(r.status) })
  if (held.status === 200) {
    const bought = http.post(`${BASE}/purchase?code=${held.json("code")}`)
    check(bought, { "purchase succeeded": (r) => r.status === 200 })
  }
  if (__ITER % 5 === 0) {
    const status = http.get(`${BASE}/status`)
    check(status, { "status ok": (r) => r.status === 200 && r.json("items_sold") <= r.json("items_total") })
  }
}
