/**
 * A request's parameters: from the query string, and from a JSON, form or multipart body when it has one.
 * A parameter given twice (in any spelling, or once in the query and once in the body) is ambiguous, and a
 * body that cannot be read is refused: both are 400 invalid_request naming what is wrong.
 */
import { safeDecode } from "../redact"
import { fail } from "./respond"

export type Params = Record<string, string>

const decodedName = (raw: string) => (raw.includes("%") || raw.includes("+") ? safeDecode(raw) : raw)

/**
 * The pairs of a query string or form body (`a=1&b=2`) whose names are in `names`, decoded; a name repeated in
 * any spelling (`user%5Fid` is `user_id`) is returned as `repeated`. Other names are ignored.
 */
export function pairsOf(text: string, names: readonly string[]): { params: Params; repeated?: string } {
  const params: Params = {}
  if (text === "") return { params }
  for (const pair of text.split("&")) {
    const eq = pair.indexOf("=")
    const name = decodedName(eq < 0 ? pair : pair.slice(0, eq))
    if (!names.includes(name)) continue
    if (name in params) return { params, repeated: name }
    const raw = eq < 0 ? "" : pair.slice(eq + 1)
    params[name] = raw.includes("%") || raw.includes("+") ? safeDecode(raw) : raw
  }
  return { params }
}

/** The query string of a request URL (after `?`, before `#`), or "". */
function queryOf(url: string): string {
  const q = url.indexOf("?")
  if (q < 0) return ""
  const hash = url.indexOf("#", q)
  return hash < 0 ? url.slice(q + 1) : url.slice(q + 1, hash)
}

/** Reads at most `limit` bytes of the body; undefined if it is longer (then the request is refused 413). */
async function bodyText(request: Request, limit: number): Promise<string | undefined> {
  if (!request.body) return ""
  const reader = request.body.getReader()
  const chunks: Uint8Array[] = []
  let size = 0
  for (;;) {
    const { done, value } = await reader.read()
    if (done) break
    size += value.byteLength
    if (size > limit) {
      reader.cancel().catch(() => {})
      return undefined
    }
    chunks.push(value)
  }
  return Buffer.concat(chunks).toString("utf8")
}

const bad = (message: string) => fail("invalid_request", message)

/** JSON values a parameter may have: a string, or a whole number where the parameter is a number (`id`). */
function jsonValue(name: string, value: unknown): string | Response {
  if (typeof value === "string") return value
  if (typeof value === "number" && Number.isInteger(value) && value >= 0) return String(value)
  return bad(`${name} must be a string${name === "id" ? " or a whole number" : ""} in the JSON body`)
}

async function bodyParams(request: Request, names: readonly string[], limit: number): Promise<Params | Response> {
  const type = (request.headers.get("content-type") ?? "").split(";")[0]!.trim().toLowerCase()
  const text = await bodyText(request, limit)
  if (text === undefined) return fail("body_too_large", `The body is larger than ${limit} bytes.`)
  if (text.trim() === "") return {}
  if (type === "application/json" || type.endsWith("+json")) {
    let value: unknown
    try {
      value = JSON.parse(text)
    } catch {
      return bad("The body is not valid JSON.")
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) return bad(`The JSON body must be an object, like {"user_id": "alice", "id": 42}.`)
    const params: Params = {}
    for (const name of names) {
      if (!(name in value)) continue
      const v = jsonValue(name, (value as Record<string, unknown>)[name])
      if (typeof v !== "string") return v
      params[name] = v
    }
    return params
  }
  if (type === "application/x-www-form-urlencoded") {
    const { params, repeated } = pairsOf(text.trim(), names)
    return repeated ? bad(`${repeated} must be given once`) : params
  }
  if (type === "multipart/form-data") {
    let form: Awaited<ReturnType<Response["formData"]>>
    try {
      form = await new Response(text, { headers: { "content-type": request.headers.get("content-type")! } }).formData()
    } catch {
      return bad("The multipart body cannot be read.")
    }
    const params: Params = {}
    for (const name of names) {
      const values = form.getAll(name)
      if (values.length > 1) return bad(`${name} must be given once`)
      if (values.length === 1) {
        if (typeof values[0] !== "string") return bad(`${name} must be a field, not a file`)
        params[name] = values[0]
      }
    }
    return params
  }
  return bad(type ? `A body of type ${type} cannot be read: send JSON (application/json) or a form (application/x-www-form-urlencoded).` : "The body has no Content-Type: send JSON (application/json) or a form (application/x-www-form-urlencoded).")
}

/**
 * The named parameters of a request, from its query and its body, or the 400 (or 413) to answer. The body is
 * read only when the request says it has one, so that the common case (parameters in the query) costs nothing more.
 */
export async function requestParams(request: Request, names: readonly string[], limit: number): Promise<Params | Response> {
  const { params, repeated } = pairsOf(queryOf(request.url), names)
  if (repeated) return bad(`${repeated} must be given once`)
  const headers = request.headers
  const length = headers.get("content-length")
  if ((length === null || length === "0") && !headers.has("content-type") && !headers.has("transfer-encoding")) return params
  const body = await bodyParams(request, names, limit)
  if (body instanceof Response) return body
  for (const name of Object.keys(body)) {
    if (name in params) return bad(`${name} is given both in the query and in the body: give it once`)
    params[name] = body[name]!
  }
  return params
}
