/** createApp(deps): the HTTP API over any sale engine: the routes of http/routes.ts, their handlers, and error mapping. */
import { Elysia } from "elysia"
import scalarBundle from "../../node_modules/@scalar/api-reference/dist/browser/standalone.js" with { type: "file" }
import type { Config } from "../config"
import { requestErrorOf } from "../errors"
import { metrics as processMetrics, type Metrics, type RequestOutcome } from "../metrics"
import { generatedCatalog, type Catalog } from "../sale/catalog"
import { UnavailableError, type Engine } from "../sale/engine"
import { docsPage, openApiDocument, parameterRules } from "./docs"
import { operability } from "./operability"
import { normalisedUrl, oversized, pathOf, requestLimits } from "./edge"
import { requestParams, type Params } from "./params"
import { admission, samePeer, type Limits } from "./ratelimit"
import { fail, iso, json } from "./respond"
import { allowOf, endpointOf, routeOf, routes, type Endpoint, type Method, type RouteKey } from "./routes"
import { statusBody } from "./status"

export type AppDeps = {
  engine: Engine
  /** Without the rate limits (as in the tests), admission control is off. */
  config: Pick<Config, "saleItems" | "salePeriodSeconds"> & Partial<Limits>
  log?: (message: string) => void
  /** The items' names and images; the generated ones by default. */
  catalog?: Catalog
  /** Where answers are counted; the process's series by default. */
  metrics?: Metrics
}

/**
 * performance.now() at each request's arrival, set by the onRequest hook. Kept beside the request, not on
 * Elysia's context: a hook or handler that hands its whole context to a function makes Elysia build every
 * part of it (headers, cookies, body) for every request, which cost more than the rest of the app together.
 */
const arrivals = new WeakMap<Request, number>()
const startedAt = (request: Request) => arrivals.get(request)

type Server = { requestIP(request: Request): { address: string } | null } | null
/** What a handler gets: the request and the server it came through (for the peer's address); nothing else is built. */
type Handler = (context: { request: Request; server: Server }) => unknown

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

export function createApp({ engine, config, log = console.error, catalog = generatedCatalog, metrics = processMetrics }: AppDeps) {
  const limits = admission(config, metrics)
  const ops = operability({ engine, config, metrics, admission: limits, startedAt })
  const count = (endpoint: Endpoint, outcome: RequestOutcome, request: Request) => metrics.request(endpoint, outcome, startedAt(request))
  /** An error answer, counted under the request-level code its status names. */
  const refusal = (request: Request, response: Response) => (count(endpointOf(pathOf(request.url)), requestErrorOf(response.status) ?? "internal", request), response)

  const document = openApiDocument()
  const page = docsPage("/swagger/scalar.js", "/swagger/json")
  const docsHeaders = { "content-type": "text/html; charset=utf-8", "cache-control": "no-cache" }

  const handlers: Record<RouteKey, Handler> = {
    "POST /checkout": async ({ request, server }) => {
      const params = await validParams(request, checkoutNames)
      if (params instanceof Response) return refusal(request, params)
      const refused = limits.checkout(params.user_id, request, server)
      if (refused) return count("checkout", "rate_limited", request), refused
      const itemId = Number(params.id.startsWith("item") ? params.id.slice(4) : params.id)
      const result = await engine.checkout(params.user_id, itemId)
      count("checkout", result.ok ? (result.repeated ? "repeated" : "reserved") : result.error, request)
      if (!result.ok) return fail(result.error)
      return { message: "success" as const, code: result.code, sale_id: result.saleId, item: catalog.itemOf(result.saleId, itemId), expires_at: iso(result.expiresAt) }
    },
    "POST /purchase": async ({ request, server }) => {
      const params = await validParams(request, purchaseNames)
      if (params instanceof Response) return refusal(request, params)
      const refused = limits.purchase(params.code, request, server)
      if (refused) return count("purchase", "rate_limited", request), refused
      const result = await engine.purchase(params.code)
      count("purchase", result.ok ? "purchased" : result.error, request)
      if (!result.ok) return fail(result.error)
      return { message: "success" as const, sale_id: result.saleId, user_id: result.userId, item: catalog.itemOf(result.saleId, result.itemId), purchased_at: iso(result.purchasedAt) }
    },
    "GET /status": async ({ request }) => {
      const body = statusBody(await engine.status(), config)
      count("status", "ok", request)
      return body
    },
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
      if (refused) return refusal(request, refused)
      // Served as what the path means, as a proxy in front would route it: /swagger/../checkout is /checkout.
      const normal = normalisedUrl(request.url)
      if (normal === undefined) return
      let copy: Request
      try {
        const body = request.method === "GET" || request.method === "HEAD" ? null : request.body
        copy = new Request(normal, { method: request.method, headers: request.headers, body, duplex: "half" } as RequestInit)
      } catch {
        return refusal(request, fail("invalid_request", "The request's Host or target is not a valid URL."))
      }
      samePeer(request, copy, server)
      return dispatch(copy)
    })
    .onError(({ code, error, request }) => {
      let response: Response
      if (code === "PARSE") response = fail("invalid_request", "The request could not be parsed.")
      else if (code === "NOT_FOUND") {
        const path = pathOf(request.url)
        const route = routeOf(path)
        response = route ? fail("method_not_allowed", `${route.path} accepts ${allowOf(route)}.`, { allow: allowOf(route) }) : fail("not_found")
      } else if (error instanceof UnavailableError) {
        log(`unavailable: ${error.message}`)
        response = fail("unavailable", undefined, { "retry-after": String(error.retryAfterSeconds) })
      } else {
        log(`internal error on ${request.method} ${pathOf(request.url)}: ${(error as Error)?.stack ?? String(error)}`)
        response = fail("internal")
      }
      return refusal(request, response)
    })
  for (const route of routes) {
    for (const method of route.methods as readonly Method[]) {
      const handler = handlers[`${method} ${route.path}` as RouteKey]
      app.route(method, route.path, handler as never)
      // Bun would answer HEAD with the GET route: for /events a stream that never ends and a watcher never released.
      if (method === "GET" && "noHead" in route && route.noHead) {
        app.route("HEAD", route.path, (({ request }: { request: Request }) => refusal(request, fail("method_not_allowed", `${route.path} accepts GET.`, { allow: "GET" }))) as never)
      }
    }
  }
  dispatch = (request) => app.handle(request)
  /** Ends the live page's streams: call before the server's stop(), which waits for open responses. */
  return Object.assign(app, { closeWatchers: () => ops.feed.close() })
}

export type App = ReturnType<typeof createApp>
