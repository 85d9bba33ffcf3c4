/**
 * CORS for the storefront: CORS_ORIGINS (origins, or *) may call the public endpoints from a browser. Preflights
 * are answered; answers carry Access-Control-Allow-Origin. Never for /admin: the operator API is not for pages.
 */
import type { Route } from "./routes"

export type Cors = {
  /** The answer to a preflight (OPTIONS with Access-Control-Request-Method) of a storefront route; undefined if not one. */
  preflight(request: Request, route: Route | undefined): Response | undefined
  /** Adds the CORS headers to a storefront route's answer to an allowed origin. */
  allow(request: Request, response: Response): Response
}

const exposed = "ETag, Retry-After"

export function cors(origins: readonly string[]): Cors | undefined {
  if (origins.length === 0) return undefined
  const any = origins.includes("*")
  const allowed = new Set(origins)
  const originOf = (request: Request) => {
    const origin = request.headers.get("origin")
    return origin !== null && (any || allowed.has(origin)) ? origin : undefined
  }
  // With "*" the answer does not depend on the origin; with a list it does, so caches must key on it.
  const vary = any ? undefined : "Origin"
  return {
    preflight(request, route) {
      if (request.method !== "OPTIONS" || !route?.cors || !request.headers.has("access-control-request-method")) return undefined
      const origin = originOf(request)
      const headers: Record<string, string> = vary ? { vary } : {}
      if (origin) {
        Object.assign(headers, {
          "access-control-allow-origin": any ? "*" : origin,
          "access-control-allow-methods": [...route.methods, ...(route.methods.includes("GET") ? ["HEAD"] : []), "OPTIONS"].join(", "),
          "access-control-allow-headers": "Content-Type, If-None-Match",
          "access-control-max-age": "600",
        })
      }
      // An origin not allowed gets no CORS headers: the browser refuses the call.
      return new Response(null, { status: 204, headers })
    },
    allow(request, response) {
      const origin = originOf(request)
      if (origin) {
        response.headers.set("access-control-allow-origin", any ? "*" : origin)
        response.headers.set("access-control-expose-headers", exposed)
      }
      if (vary) response.headers.append("vary", vary)
      return response
    },
  }
}
