/** createApp(deps): the HTTP API over any sale engine: the routes of http/routes.ts, their handlers, and error mapping. */
import { Elysia } from "elysia"
import scalarBundle from "../../node_modules/@scalar/api-reference/dist/browser/standalone.js" with { type: "file" }
import type { Config } from "../config"
import { requestErrorOf } from "../errors"
import { metrics as processMetrics, type Metrics, type RequestOutcome } from "../metrics"
import { UnavailableError, type Engine } from "../sale/engine"
import { adminAccess, adminHandlers } from "./admin"
import { cors } from "./cors"
import { docsPage, openApiDocument, parameterRules } from "./docs"
import { operability } from "./operability"
import { normalisedUrl, oversized, pathOf, requestLimits } from "./edge"
import { storefront } from "./items"
import { requestParams, type Params } from "./params"
import { admission, samePeer, type Limits, type Peer } from "./ratelimit"
import { codeOf, fail, iso, json, refuse } from "./respond"
import { allowOf, endpointOf, routeOf, routes, type Endpoint, type Method, type Route, type RouteKey } from "./routes"
import { statusBody } from "./status"

export type AppDeps = {
  engine: Engine
  /** Without the rate limits (as in the tests), admission control is off; without a token, the operator API. */
  config: Partial<Pick<Config, "userLimit" | "holdSeconds" | "corsOrigins" | "adminToken">> & Partial<Limits>
  log?: (message: string) => void
  /** Where answers are counted; the process's series by default. */
  metrics?: Metrics
  /** WORKERS > 1: what /metrics adds to this process's series (src/worker.ts). */
  gatherMetrics?: (own: string) => Promise<string>
}

/**
 * performance.now() at each request's arrival, set by the onRequest hook. Kept beside the request, not on
 * Elysia's context: a hook or handler that hands its whole context to a function makes Elysia build every
 * part of it (headers, cookies, body) for every request, which cost more than the rest of the app together.
 */
const arrivals = new WeakMap<Request, number>()
const startedAt = (request: Request) => arrivals.get(request)

type Context = { request: Request; server: Peer; params: Record<string, string> }
/** What a handler gets: the request, the server it came through (for the peer's address) and the path's parameters. */
type Handler = (context: Context) => unknown

/** The parameters `names` of a request, validated, or the 400 to answer. */
async function validParams<N extends keyof typeof parameterRules>(request: Request, names: readonly N[]): Promise<Record<N, string> | Response> {
  const params = await requestParams(request, names, requestLimits.bodyBytes)
  if (params instanceof Response) return params
  for (const name of names) {
    const value = (params as Params)[name]
    if (value === undefined || !parameterRules[name].pattern.test(value)) return fail("invalid_request", value === undefined ? `${name} is required (in the query or the body)` : parameterRules[name].message)
  }
  return params as Record<N, string>
}

const checkoutNames = ["user_id", "id"] as const
const purchaseNames = ["code"] as const

export function createApp({ engine, config, log = console.error, metrics = processMetrics, gatherMetrics }: AppDeps) {
  const limits = admission(config, metrics)
  const ops = operability({ engine, metrics, admission: limits, startedAt, gather: gatherMetrics })
  const shelf = storefront(engine)
  const access = adminAccess(config.adminToken, config.trustProxyHops ?? 0)
  const admin = adminHandlers({ engine, config: { userLimit: config.userLimit ?? 10, holdSeconds: config.holdSeconds ?? 300, trustProxyHops: config.trustProxyHops ?? 0 } })
  const storefrontCors = cors(config.corsOrigins ?? [])
  const count = (endpoint: Endpoint, outcome: RequestOutcome, request: Request) => metrics.request(endpoint, outcome, startedAt(request))
  /** An answer made here (not a decision's), counted under its code, or `ok`. */
  const counted = (request: Request, response: Response, endpoint = endpointOf(pathOf(request.url))) => {
    const outcome = response.status === 304 ? "not_modified" : response.status < 300 ? "ok" : (codeOf.get(response) ?? requestErrorOf(response.status) ?? "internal")
    count(endpoint, outcome, request)
    return response
  }

  const document = openApiDocument()
  const page = docsPage("/swagger/scalar.js", "/swagger/json")
  const docsHeaders = { "content-type": "text/html; charset=utf-8", "cache-control": "no-cache" }

  const handlers: Record<RouteKey, Handler> = {
    "POST /checkout": async ({ request, server }) => {
      const params = await validParams(request, checkoutNames)
      if (params instanceof Response) return counted(request, params)
      const refused = limits.checkout(params.user_id, request, server)
      if (refused) return count("checkout", "rate_limited", request), refused
      const itemId = Number(params.id.startsWith("item") ? params.id.slice(4) : params.id)
      const result = await engine.checkout(params.user_id, itemId)
      count("checkout", result.ok ? (result.repeated ? "repeated" : "reserved") : result.error, request)
      if (result.ok) return { message: "success" as const, code: result.code, sale_id: result.saleId, item: result.item, expires_at: iso(result.expiresAt) }
      if (result.error !== "no_active_sale") return refuse(result.error)
      // No sale is open: say which opens next, and when to come back.
      const next = result.next
      if (!next) return fail("no_active_sale", "No sale is open now, and none is planned.", undefined, { next_sale: null })
      const seconds = Math.max(1, Math.ceil((next.startsAt - result.now) / 1000))
      return fail("no_active_sale", `No sale is open now; the next one, "${next.name}", opens at ${iso(next.startsAt)}.`, { "retry-after": String(seconds) }, { next_sale: { id: next.id, name: next.name, starts_at: iso(next.startsAt) } })
    },
    "POST /purchase": async ({ request, server }) => {
      const params = await validParams(request, purchaseNames)
      if (params instanceof Response) return counted(request, params)
      const refused = limits.purchase(params.code, request, server)
      if (refused) return count("purchase", "rate_limited", request), refused
      const result = await engine.purchase(params.code)
      count("purchase", result.ok ? "purchased" : result.error, request)
      if (!result.ok) return refuse(result.error)
      return { message: "success" as const, sale_id: result.saleId, user_id: result.userId, item: result.item, purchased_at: iso(result.purchasedAt) }
    },
    "GET /status": async ({ request }) => {
      const body = statusBody(await engine.status())
      count("status", "ok", request)
      return body
    },
    "GET /items": async ({ request }) => counted(request, await shelf.list(request)),
    "GET /items/:id": async ({ request, params }) => counted(request, await shelf.one(request, params.id ?? "")),
    "GET /health": async ({ request }) => {
      const h = await engine.health()
      count("health", h.status, request)
      return new Response(JSON.stringify(h), { status: h.status === "down" ? 503 : 200, headers: json })
    },
    "GET /metrics": ({ request }) => ops.metrics(request),
    "GET /events": () => ops.events(),
    "GET /": ({ request }) => ops.page(request),
    "GET /swagger": ({ request }) => (count("docs", "ok", request), new Response(page, { headers: docsHeaders })),
    "GET /swagger/json": ({ request }) => (count("docs", "ok", request), document),
    "GET /swagger/scalar.js": ({ request }) => {
      count("docs", "ok", request)
      return new Response(Bun.file(scalarBundle), { headers: { "content-type": "text/javascript; charset=utf-8", "cache-control": "public, max-age=86400" } })
    },
    "GET /admin/sales": admin.list,
    "POST /admin/sales": admin.create,
    "GET /admin/sales/:id": admin.get,
    "PATCH /admin/sales/:id": admin.change,
    "DELETE /admin/sales/:id": admin.remove,
    "POST /admin/sales/:id/pause": admin.control("pause"),
    "POST /admin/sales/:id/resume": admin.control("resume"),
    "POST /admin/sales/:id/end": admin.control("end"),
    "GET /admin/actions": admin.actions,
    "GET /admin/sales/:id/orders": admin.orders,
    "GET /admin/sales/:id/report": admin.report,
    "POST /admin/sales/:id/audit": admin.audit,
    "DELETE /admin/holds/:code": admin.releaseHold,
    "GET /admin/users/:user_id": admin.user,
  }

  /** The handler as registered: the operator API checks the token first; a storefront route gets its CORS headers. */
  function registered(route: Route, handler: Handler): Handler {
    if (route.admin) {
      return async ({ request, server, params }) => {
        const refused = access.check(request, server)
        return counted(request, refused ?? ((await handler({ request, server, params })) as Response), "admin")
      }
    }
    if (route.cors && storefrontCors) {
      const allow = storefrontCors
      return async ({ request, server, params }) => {
        const answer = await handler({ request, server, params })
        return allow.allow(request, answer instanceof Response ? answer : Response.json(answer))
      }
    }
    return handler
  }

  /** The app's own handler, for a request it serves under its normalised path (set once the app exists). */
  let dispatch: (request: Request) => Promise<Response> = () => Promise.reject(new Error("the app is not built yet"))
  // Routed by Elysia, not by Bun's native router: that one matches the raw path, so /swagger/../checkout
  // missed /checkout and fell through to a 404 or a wrong 405, and a request the app re-dispatches under its
  // normalised path could not reach a route at all. standardHostname off: Elysia otherwise looks for the path
  // from the 12th character of the URL, and a short Host (`Host: a`) made every path a 404.
  const app = new Elysia({ systemRouter: false, handler: { standardHostname: false } })
    .onRequest(({ request, server }) => {
      arrivals.set(request, performance.now())
      const refused = oversized(request)
      if (refused) return counted(request, refused)
      if (request.method === "OPTIONS" && storefrontCors) {
        const preflight = storefrontCors.preflight(request, routeOf(pathOf(request.url)))
        if (preflight) return counted(request, preflight)
      }
      // Served as what the path means, as a proxy in front would route it: /swagger/../checkout is /checkout.
      const normal = normalisedUrl(request.url)
      if (normal === undefined) return
      let copy: Request
      try {
        const body = request.method === "GET" || request.method === "HEAD" ? null : request.body
        copy = new Request(normal, { method: request.method, headers: request.headers, body, duplex: "half" } as RequestInit)
      } catch {
        return counted(request, fail("invalid_request", "The request's Host or target is not a valid URL."))
      }
      samePeer(request, copy, server)
      return dispatch(copy)
    })
    .onError(({ code, error, request, server }) => {
      let response: Response
      const path = pathOf(request.url)
      if (code === "PARSE") response = fail("invalid_request", "The request could not be parsed.")
      else if (code === "NOT_FOUND") {
        const route = routeOf(path)
        // Under /admin nothing is said, not even what exists, without the token.
        const denied = path.startsWith("/admin") ? access.check(request, server as Peer) : undefined
        response = denied ?? (route ? fail("method_not_allowed", `${route.path} accepts ${allowOf(route)}.`, { allow: allowOf(route) }) : fail("not_found"))
      } else if (error instanceof UnavailableError) {
        log(`unavailable: ${error.message}`)
        response = fail("unavailable", undefined, { "retry-after": String(error.retryAfterSeconds) })
      } else {
        log(`internal error on ${request.method} ${path}: ${(error as Error)?.stack ?? String(error)}`)
        response = fail("internal")
      }
      const route = routeOf(path)
      if (route?.cors && storefrontCors) storefrontCors.allow(request, response)
      return counted(request, response)
    })
  for (const route of routes as readonly Route[]) {
    for (const method of route.methods as readonly Method[]) {
      app.route(method, route.path, registered(route, handlers[`${method} ${route.path}` as RouteKey]) as never)
      // Bun would answer HEAD with the GET route: for /events a stream that never ends and a watcher never released.
      if (method === "GET" && route.noHead) {
        app.route("HEAD", route.path, (({ request }: { request: Request }) => counted(request, fail("method_not_allowed", `${route.path} accepts GET.`, { allow: "GET" }))) as never)
      }
    }
  }
  dispatch = (request) => app.handle(request)
  /**
   * closeWatchers ends the live page's streams: call before the server's stop(), which waits for open responses.
   * workerSeries is what a worker serves the others of its own series (src/worker.ts).
   */
  return Object.assign(app, { closeWatchers: () => ops.feed.close(), workerSeries: ops.workerSeries })
}

export type App = ReturnType<typeof createApp>
