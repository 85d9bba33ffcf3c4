/**
 * The OpenAPI document, built from the route table (http/routes.ts): every route has an operation here, with
 * its parameters, body, success shape and, per status, every error code it can answer with. And the docs page
 * at /swagger, whose script is served from the binary (it works offline).
 */
import type { ErrorCode } from "../errors"
import { codePattern } from "../sale/codes"
import { version } from "../version"
import { routes, type RouteKey } from "./routes"
import { type Schema, str, int, object, time, item, schemas, shelfItem, nextSale, counts, saleView, saleInput, salePatch, action, json, order, userUnit, audit, report, responses } from "./schemas"

const userIdPattern = "^[A-Za-z0-9_.:@-]{1,64}$"
const itemIdPattern = "^(item)?[0-9]{1,9}$"

/** The parameters of checkout and purchase, each in the query or in a JSON or form body. */
export const parameterRules = {
  user_id: { pattern: new RegExp(userIdPattern), message: "user_id must be 1 to 64 characters from A-Z a-z 0-9 _ . : @ -" },
  id: { pattern: new RegExp(itemIdPattern), message: "id must be an item id: 1 to 9 decimal digits, optionally written item42" },
  code: { pattern: new RegExp(codePattern), message: "code must be a code returned by /checkout" },
}

const inQueryOrBody = (fields: Record<string, { schema: Schema; description: string }>) => ({
  parameters: Object.entries(fields).map(([name, f]) => ({ name, in: "query", required: false, description: `${f.description} Required, here or in the body.`, schema: f.schema })),
  requestBody: {
    required: false,
    description: "The same parameters may come in a body instead of the query (each in one place only).",
    content: Object.fromEntries(["application/json", "application/x-www-form-urlencoded", "multipart/form-data"].map((type) => [type, { schema: object(Object.fromEntries(Object.entries(f(fields)))) }])),
  },
})
const f = (fields: Record<string, { schema: Schema; description: string }>) => Object.fromEntries(Object.entries(fields).map(([name, { schema, description }]) => [name, { ...schema, description }]))

const checkoutFields = {
  user_id: { schema: str({ pattern: userIdPattern }), description: "Who checks out." },
  id: { schema: { oneOf: [str({ pattern: itemIdPattern }), int({ minimum: 0 })] }, description: "The item: 42, or item42." },
}
const purchaseFields = { code: { schema: str({ pattern: codePattern }), description: "The code of a live hold, from /checkout." } }

const always: ErrorCode[] = ["body_too_large", "url_too_long"]
/** Every operator route may answer these: the token, and the limit on failed attempts. */
const guarded: ErrorCode[] = ["unauthorized", "rate_limited", "not_found"]
const operator = (summary: string, description: string, ok: Schema, okDescription: string, errors: ErrorCode[], extra: Schema = {}, okStatus = 200) => ({
  tags: ["operator"],
  security: [{ bearer: [] }],
  summary,
  description,
  ...extra,
  responses: responses(ok, okDescription, [...errors, ...guarded, ...always, "unavailable"], okStatus),
})
const saleId = { parameters: [{ name: "id", in: "path", required: true, schema: int() }] }
const jsonBody = (schema: Schema) => ({ requestBody: { required: true, content: { "application/json": { schema } } } })

/** One operation per route and method: the compiler refuses a route without its documentation. */
const operations: Record<RouteKey, Schema & { hide?: true }> = {
  "POST /checkout": {
    summary: "Hold an item",
    description: "Holds the item for the user for HOLD_SECONDS and returns a code to buy it with. Checking out the same item again while the hold is live returns the same code and does not count again.",
    ...inQueryOrBody(checkoutFields),
    responses: (() => {
      const r = responses(schemas.checkout, "One unit of the item (its lowest free one) is held for this user.", ["invalid_request", "unknown_item", "sold_out", "sale_paused", "item_sold", "item_reserved", "no_active_sale", "user_limit", "rate_limited", ...always, "unavailable"]) as Record<string, { content: Record<string, { schema: Schema }> }>
      // no_active_sale names the next sale (or null): the 409's body has it.
      const body = r[409]!.content["application/json"]!.schema as { properties: Record<string, Schema> }
      body.properties.next_sale = { ...nextSale, nullable: true, description: "With no_active_sale: the next sale to open (Retry-After counts down to it), or null." }
      return r
    })(),
  },
  "POST /purchase": {
    summary: "Buy a held item",
    description: "Buys the item held under this code. A live hold always converts; a code sells at most once.",
    ...inQueryOrBody(purchaseFields),
    responses: responses(schemas.purchase, "The item is sold to the holder of the code.", ["invalid_request", "code_not_found", "code_used", "rate_limited", ...always, "unavailable"]),
  },
  "GET /status": { summary: "The current sale, counted across every instance", responses: responses(schemas.status, "The current sale.", ["unavailable"]) },
  "GET /items": {
    summary: "The storefront: the open sale's items (the next one's before it opens)",
    description: "At most a second old, from the server's memory. Paged by offset and limit. The ETag is a hash of the body, equal on every instance: If-None-Match gets 304.",
    parameters: [
      { name: "offset", in: "query", required: false, schema: int({ minimum: 0, default: 0 }) },
      { name: "limit", in: "query", required: false, schema: int({ minimum: 1, maximum: 1000, default: 100 }) },
    ],
    responses: { ...responses(object({ sale_id: int({ nullable: true }), total: int(), offset: int(), limit: int(), items: { type: "array", items: shelfItem } }), "A page of items; total 0 and sale_id null when no sale is planned.", ["invalid_request"]), 304: { description: "Not modified (If-None-Match)." } },
  },
  "GET /items/:id": {
    summary: "One item of the storefront",
    parameters: [{ name: "id", in: "path", required: true, schema: str({ pattern: itemIdPattern }) }],
    responses: { ...responses(object({ sale_id: int(), ...shelfItem.properties as Record<string, Schema> }, ["price"]), "The item.", ["invalid_request", "unknown_item"]), 304: { description: "Not modified (If-None-Match)." } },
  },
  "GET /health": {
    summary: "Whether this instance can sell",
    description: '200 "ok"; 200 "degraded" when it can sell but the durable store is down or lags (see checks); 503 "down" when it cannot sell, or while it starts and waits for Redis or PostgreSQL (checks.starting says what it waits for).',
    responses: { 200: { description: "Can sell (ok or degraded).", content: json(schemas.health) }, 503: { description: "Cannot sell.", content: json(schemas.health) } },
  },
  "GET /metrics": {
    summary: "Prometheus metrics of this instance",
    description: "Text exposition format 0.0.4: requests by endpoint and outcome, request-duration histograms, script batch sizes, durable-store commits and backlog, rebuilds, the current sale's items, and process metrics. Each instance serves its own; Prometheus labels them by `instance`. An instance of several workers (WORKERS) serves every worker's series, each labelled with its `worker`, whichever worker answers; the engine's gauges once, unlabelled.",
    responses: { 200: { description: "The metrics.", content: { "text/plain; version=0.0.4": { schema: str() } } } },
  },
  "GET /events": {
    summary: "The live page's feed (server-sent events)",
    description:
      "A `text/event-stream`: on connect and then once a second, one `data:` line of JSON with every /status field, plus `checkouts_per_second` and `purchases_per_second` (all instances), `outcomes` (this instance's answers by outcome over the last `outcomes_window_seconds`), `engine`, `health`, `backlog_entries`, `backlog_age_seconds`, `next_sale` (id, name, starts_at, or null), `actions` (the latest five operator actions: at, action, sale_id) and `now` (Unix ms). When the engine cannot tell the status, the /status fields are absent and `error` says why.",
    responses: { 200: { description: "The stream.", content: { "text/event-stream": { schema: str() } } } },
  },
  "GET /admin/sales": operator("The sales", "The planned sales (or the current recurring one), each with its status and counts.", object({ sales: { type: "array", items: saleView } }), "The sales.", []),
  "POST /admin/sales": operator(
    "Plan a sale",
    "SALE_SCHEDULE=planned only. Kept before it is answered. 400 names every bad field (in `fields`); 409 sale_overlaps names the sales it would overlap.",
    saleView,
    "The sale, with its id.",
    ["invalid_request", "sale_overlaps", "planned_sales_off"],
    jsonBody(saleInput),
    201,
  ),
  "GET /admin/sales/:id": operator("One sale, with its items", "Each item with its stock, per_user and what is available now.", saleView, "The sale.", [], saleId),
  "PATCH /admin/sales/:id": operator(
    "Change a sale",
    "Its name, ends_at, user_limit, hold_seconds, and items' stock. A lower stock is refused below the highest unit sold or held (409 stock_in_use); a sale that is over keeps its end (409 sale_ended).",
    saleView,
    "The sale as changed.",
    ["invalid_request", "sale_overlaps", "sale_ended", "stock_in_use", "planned_sales_off"],
    { ...saleId, ...jsonBody(salePatch) },
  ),
  "DELETE /admin/sales/:id": operator("Delete a sale before it opens", "After it opened: 409 sale_started (end it instead).", object({ message: str({ enum: ["deleted"] }), id: int() }), "Deleted.", ["sale_started", "planned_sales_off"], saleId),
  "POST /admin/sales/:id/pause": operator("Pause a sale", "Checkouts are refused with 409 sale_paused (kept as attempts); live holds can still be bought and keep expiring; ends_at does not move.", saleView, "The sale, paused.", ["sale_ended"], saleId),
  "POST /admin/sales/:id/resume": operator("Resume a paused sale", "", saleView, "The sale, selling again.", ["sale_ended"], saleId),
  "POST /admin/sales/:id/end": operator("End a sale now", "Over from now, exactly as at its ends_at: live holds can still be bought until they expire.", saleView, "The sale, ended.", ["sale_ended"], saleId),
  "GET /admin/actions": operator(
    "Every operator action, newest first",
    "From admin_actions: what was done, to which sale, from which address. Page with before (an id) and limit; sale_id filters.",
    object({ actions: { type: "array", items: action } }),
    "The actions.",
    [],
    { parameters: [{ name: "before", in: "query", schema: int() }, { name: "limit", in: "query", schema: int({ minimum: 1, maximum: 1000, default: 100 }) }, { name: "sale_id", in: "query", schema: int() }] },
  ),
  "GET /admin/sales/:id/orders": {
    ...operator("Every purchase of a sale, streamed", "", object({}), "", []),
    description:
      "Straight from the durable store with a cursor, oldest first: 100,000 orders stream in seconds with flat memory. CSV (RFC 4180: a field with a comma, quote or line break is quoted, quotes doubled) with a header line, or JSON lines. price is the item's price in the sale's definition (empty or null without one). The export is kept as an operator action.",
    parameters: [...saleId.parameters, { name: "format", in: "query", required: false, schema: str({ enum: ["csv", "jsonl"], default: "csv" }) }],
    responses: {
      ...responses(order, "", ["invalid_request", ...guarded, ...always, "unavailable"]),
      200: { description: "The orders: sale_id, item_id, unit, name, price, user_id, code, purchased_at.", content: { "text/csv": { schema: str() }, "application/x-ndjson": { schema: order } } },
    },
  },
  "GET /admin/sales/:id/report": operator(
    "What a sale sold, and its audit",
    "From the durable store: units sold per item (items that sold), revenue (by the items' prices; null without any), attempts per outcome, holds released by hand, the first sale and when it sold out; and the latest audit of the live state against the store (null until the sale is over and its holds have expired: audit_due_at says when).",
    report,
    "The report.",
    [],
    saleId,
  ),
  "POST /admin/sales/:id/audit": operator(
    "Audit a sale again, now",
    "Compares the live state (Redis, or the embedded engine's memory) with the durable store: units sold, live holds, each item's and each user's counts, and the counters; keeps the result. Only once the sale is over, its holds have expired and every decision is written (409 not_auditable otherwise, or once the live state is forgotten a day later).",
    audit,
    "The audit.",
    ["not_auditable"],
    saleId,
  ),
  "DELETE /admin/holds/:code": operator(
    "Release a live hold by hand",
    "Its unit returns to stock and its user's count drops, as at its expiry; the code is then 404 code_not_found. The release is kept (with the action) before the hold is ended, so no rebuild from the store brings it back. 409 code_used for a code that was bought.",
    object({ message: str({ enum: ["released"] }), code: str(), sale_id: int(), item_id: int(), unit: int(), user_id: str(), expired_at: { ...time, description: "When the hold would have expired." } }),
    "Released.",
    ["invalid_request", "code_not_found", "code_used"],
    { parameters: [{ name: "code", in: "path", required: true, schema: str({ pattern: codePattern }) }] },
  ),
  "GET /admin/users/:user_id": operator(
    "A user's purchases and live holds in a sale",
    "For a support desk, as the durable store keeps them. The open sale by default (the latest that opened when none is open).",
    object({ user_id: str(), sale_id: int(), sale_name: str(), purchases: { type: "array", items: userUnit("purchased_at") }, holds: { type: "array", items: userUnit("expires_at") } }),
    "The user's units.",
    ["invalid_request"],
    { parameters: [{ name: "user_id", in: "path", required: true, schema: str({ pattern: userIdPattern }) }, { name: "sale_id", in: "query", required: false, schema: int() }] },
  ),
  "GET /": { hide: true },
  "GET /swagger": { hide: true },
  "GET /swagger/json": { hide: true },
  "GET /swagger/scalar.js": { hide: true },
}

const title = "Flash sale"
const description =
  "Sells a fixed stock in a burst of demand. A sale opens; users check an item out (one unit is held for them and they get a code), then buy it with the code. " +
  "Every error answer is a JSON object with two fields: `error`, the code (one HTTP status per code), and `message`, a sentence for people."

/** The OpenAPI 3 document of every route in the table. */
export function openApiDocument(): Schema {
  const paths: Record<string, Record<string, unknown>> = {}
  for (const route of routes) {
    for (const method of route.methods) {
      const { hide, ...operation } = operations[`${method} ${route.path}` as RouteKey]
      if (hide) continue
      const path = route.path.replace(/:([a-z_]+)/g, "{$1}")
      ;(paths[path] ??= {})[method.toLowerCase()] = { tags: ["shop"], ...operation }
    }
  }
  return {
    openapi: "3.0.3",
    info: { title, version, description },
    tags: [
      { name: "shop", description: "For shoppers and the storefront." },
      { name: "operator", description: "For the shop's staff: ADMIN_TOKEN as a bearer token. Without ADMIN_TOKEN every /admin path is 404." },
    ],
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "ADMIN_TOKEN (or the first line of ADMIN_TOKEN_FILE)." } } },
    paths,
  }
}

const escapeHtml = (text: string) => text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)

/** The docs page: Scalar's viewer, its script from this server, reading the document at an absolute path (so /swagger/ works too). */
export function docsPage(scriptPath: string, specPath: string): string {
  const configuration = { url: specPath, withDefaultFonts: false, hideClientButton: true, _integration: "elysiajs" }
  return `<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8" />
    <meta name="viewport" content="width=device-width, initial-scale=1" />
    <title>${escapeHtml(title)} API</title>
    <meta name="description" content="${escapeHtml(description)}" />
    <style>body { margin: 0; }</style>
  </head>
  <body>
    <script id="api-reference" data-configuration="${escapeHtml(JSON.stringify(configuration))}"></script>
    <script src="${escapeHtml(scriptPath)}"></script>
  </body>
</html>
`
}
