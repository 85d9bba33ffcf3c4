// Scenario 3, sell-out flow, for k6 users: each iteration checks out an item and buys it with the code.
// With the defaults this is also the seed scenario: 10 VUs, checkout then purchase.
//   k6 run -e BASE=http://127.0.0.1:8080 -e VUS=10 -e DURATION=30s bench/k6/sellout.js
import http from "k6/http"
import { check } from "k6"
import { Counter } from "k6/metrics"

const BASE = __ENV.BASE || "http://127.0.0.1:8080"
const ITEMS = Number(__ENV.SALE_ITEMS || 10000)
export const options = { vus: Number(__ENV.VUS || 10), duration: __ENV.DURATION || "30s" }
const sold = new Counter("items_sold")

export default function () {
  const item = 1 + ((__VU * 7919 + __ITER) % ITEMS)
  const held = http.post(`${BASE}/checkout?user_id=k6-${__VU}-${__ITER}&id=${item}`)
  check(held, { "checkout answered": (r) => [200, 409, 429].includes(r.status) })
  if (held.status !== 200) return
  const bought = http.post(`${BASE}/purchase?code=${held.json("code")}`)
  check(bought, { "purchase succeeded": (r) => r.status === 200 })
  if (bought.status === 200) sold.add(1)
}
