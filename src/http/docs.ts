/**
 * The OpenAPI document, built from the route table (http/routes.ts): every route has an operation here, with
 * its parameters, body, success shape and, per status, every error code it can answer with. And the docs page
 * at /swagger, whose script is served from the binary (it works offline).
 */
import { codeToStatus, type ErrorCode } from "../errors"
import { codePattern } from "../sale/codes"
import { version } from "../version"
import { routes, type RouteKey } from "./routes"

type Schema = Record<string, unknown>
const str = (extra: Schema = {}): Schema => ({ type: "string", ...extra })
const int = (extra: Schema = {}): Schema => ({ type: "integer", ...extra })
const object = (properties: Record<string, Schema>, optional: string[] = []): Schema => ({
  type: "object",
  required: Object.keys(properties).filter((k) => !optional.includes(k)),
  properties,
})
const time = str({ format: "date-time" })

const item = object(
  {
    id: int(),
    name: str(),
    image: str({ description: "An http(s) URL, or a path on the shop's site when the catalog gives one." }),
    price: { type: "number", description: "Only when the catalog has a price." },
  },
  ["price"],
)

export const schemas = {
  checkout: object({ message: str({ enum: ["success"] }), code: str(), sale_id: int(), item, expires_at: time }),
  purchase: object({ message: str({ enum: ["success"] }), sale_id: int(), user_id: str(), item, purchased_at: time }),
  status: object({
    sale_id: int(),
    started_at: time,
    ends_at: time,
    seconds_remaining: int(),
    items_total: int(),
    items_sold: int(),
    items_reserved: int(),
    items_available: int(),
    checkouts: object({ accepted: int(), rejected: int() }),
    purchases: object({ accepted: int(), rejected: int() }),
    sale_status: str({ enum: ["active", "sold_out"] }),
  }),
  health: object({ status: str({ enum: ["ok", "degraded", "down"] }), checks: { type: "object", additionalProperties: true } }),
}

const json = (schema: Schema) => ({ "application/json": { schema } })

/** An OpenAPI responses object: the success, then one entry per status listing its error codes. */
export function responses(ok: Schema, okDescription: string, errors: ErrorCode[], okStatus = 200) {
  const byStatus = new Map<number, ErrorCode[]>()
  for (const code of errors) byStatus.set(codeToStatus[code], [...(byStatus.get(codeToStatus[code]) ?? []), code])
  const result: Record<string, unknown> = { [okStatus]: { description: okDescription, content: json(ok) } }
  for (const [status, codes] of byStatus) {
    result[status] = {
      description: codes.map((c) => `\`${c}\``).join(", "),
      content: json({ type: "object", required: ["error", "message"], properties: { error: str({ enum: codes }), message: str() } }),
    }
  }
  return result
}

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

/** One operation per route and method: the compiler refuses a route without its documentation. */
const operations: Record<RouteKey, Schema & { hide?: true }> = {
  "POST /checkout": {
    summary: "Hold an item",
    description: "Holds the item for the user for HOLD_SECONDS and returns a code to buy it with. Checking out the same item again while the hold is live returns the same code and does not count again.",
    ...inQueryOrBody(checkoutFields),
    responses: responses(schemas.checkout, "The item is held for this user.", ["invalid_request", "unknown_item", "sold_out", "item_sold", "item_reserved", "user_limit", "rate_limited", ...always, "unavailable"]),
  },
  "POST /purchase": {
    summary: "Buy a held item",
    description: "Buys the item held under this code. A live hold always converts; a code sells at most once.",
    ...inQueryOrBody(purchaseFields),
    responses: responses(schemas.purchase, "The item is sold to the holder of the code.", ["invalid_request", "code_not_found", "code_used", "rate_limited", ...always, "unavailable"]),
  },
  "GET /status": { summary: "The current sale, counted across every instance", responses: responses(schemas.status, "The current sale.", ["unavailable"]) },
  "GET /health": {
    summary: "Whether this instance can sell",
    description: '200 "ok"; 200 "degraded" when it can sell but the durable store is down or lags (see checks); 503 "down" when it cannot sell, or while it starts and waits for Redis or PostgreSQL (checks.starting says what it waits for).',
    responses: { 200: { description: "Can sell (ok or degraded).", content: json(schemas.health) }, 503: { description: "Cannot sell.", content: json(schemas.health) } },
  },
  "GET /metrics": {
    summary: "Prometheus metrics of this process",
    description: "Text exposition format 0.0.4: requests by endpoint and outcome, request-duration histograms, script batch sizes, durable-store commits and backlog, rebuilds, the current sale's items, and process metrics. Each instance serves its own; Prometheus labels them by `instance`.",
    responses: { 200: { description: "The metrics.", content: { "text/plain; version=0.0.4": { schema: str() } } } },
  },
  "GET /events": {
    summary: "The live page's feed (server-sent events)",
    description:
      "A `text/event-stream`: on connect and then once a second, one `data:` line of JSON with every /status field, plus `checkouts_per_second` and `purchases_per_second` (all instances), `outcomes` (this instance's answers by outcome over the last `outcomes_window_seconds`), `engine`, `health`, `backlog_entries`, `backlog_age_seconds` and `now` (Unix ms). When the engine cannot tell the status, the /status fields are absent and `error` says why.",
    responses: { 200: { description: "The stream.", content: { "text/event-stream": { schema: str() } } } },
  },
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
      ;(paths[path] ??= {})[method.toLowerCase()] = operation
    }
  }
  return { openapi: "3.0.3", info: { title, version, description }, paths }
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
