/**
 * Keeping secrets out of everything the server writes: log lines, error and exit messages.
 *
 * URLs are parsed, not matched: a password may hold `@`, `:` or `/`, be percent-encoded or
 * not, or come as a `?password=` query parameter. Two layers, because either alone can miss:
 * the secrets of the configured URLs are removed wherever they appear, in every spelling, and
 * any other URL in the text is rewritten to its display form.
 */

/** Query parameters whose values are secrets (password, pass, pwd, secret, token, key, auth, credentials ...). */
const secretParameter = /pass|pwd|secret|token|key|auth|cred|sig/i

const hidden = "***"

/** `scheme://user:***@host:port/path?password=***`: what may be shown of a URL. */
export function displayUrl(raw: string): string {
  let url: URL
  try {
    url = new URL(raw)
  } catch {
    const scheme = /^([a-z][a-z0-9+.-]*:)\/\//i.exec(raw)?.[1]
    return scheme ? `${scheme}//${hidden} (not a valid URL)` : "(not a valid URL)"
  }
  const user = url.username ? `${url.username}${url.password ? `:${hidden}` : ""}@` : url.password ? `:${hidden}@` : ""
  const query = [...url.searchParams.keys()].length === 0 ? "" : `?${[...url.searchParams].map(([name, value]) => `${encodeURIComponent(name)}=${secretParameter.test(name) ? hidden : encodeURIComponent(value)}`).join("&")}`
  return `${url.protocol}//${user}${url.host}${url.pathname}${query}`
}

/** Every spelling of the URL's secrets: the password and secret query values, as written, encoded and decoded. */
export function secretsOf(raw: string): string[] {
  const found = new Set<string>()
  const add = (value: string) => {
    if (!value) return
    found.add(value)
    for (const spelling of [safeDecode(value), encodeURIComponent(value), encodeURIComponent(safeDecode(value))]) found.add(spelling)
  }
  try {
    const url = new URL(raw)
    add(url.password)
    for (const [name, value] of url.searchParams) if (secretParameter.test(name)) add(value)
  } catch {}
  // As a lenient parser (ioredis, postgres.js) may read it: a password that was not percent-encoded
  // runs from the first ":" of the userinfo to the last "@" before the query.
  const rest = raw.replace(/^[a-z][a-z0-9+.-]*:\/\//i, "").split(/[?#]/)[0] ?? ""
  const userinfo = rest.slice(0, Math.max(rest.lastIndexOf("@"), 0))
  if (userinfo.includes(":")) add(userinfo.slice(userinfo.indexOf(":") + 1))
  for (const match of raw.matchAll(/[?&]([^=&#]*)=([^&#]*)/g)) if (secretParameter.test(safeDecode(match[1]!))) add(match[2]!)
  return [...found].filter((s) => s.length > 0)
}

/** A URL component decoded as a query parser reads it (`+` is a space), or as written if it is not valid. */
export function safeDecode(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, " "))
  } catch {
    return value
  }
}

/** Userinfo, a secret parameter, or not parseable: a URL that is shown only in its display form. */
function mayHoldSecret(raw: string): boolean {
  try {
    const url = new URL(raw)
    return Boolean(url.username || url.password) || [...url.searchParams.keys()].some((name) => secretParameter.test(name))
  } catch {
    return raw.includes("@") || secretParameter.test(raw)
  }
}

const urlInText = /\b[a-z][a-z0-9+.-]*:\/\/[^\s"'<>`]+/gi

/**
 * A function that takes every secret of these values out of a text: the password and secret parameters of a
 * URL, or the whole of a value that is not a URL (a token), in every spelling; and the userinfo and secret
 * parameters of any URL.
 */
export function redactor(values: (string | undefined)[]): (text: string) => string {
  const isUrl = (v: string) => /^[a-z][a-z0-9+.-]*:\/\//i.test(v)
  const secretsOfValue = (v: string) => (isUrl(v) ? secretsOf(v) : [v, encodeURIComponent(v)])
  // A secret shorter than 4 characters is left to the URL layer: hiding every "pw" in a log line would garble it.
  const secrets = values.flatMap((v) => (v ? secretsOfValue(v) : [])).filter((s) => s.length >= 4).sort((a, b) => b.length - a.length)
  return (text) => {
    let out = text
    for (const secret of secrets) out = out.split(secret).join(hidden)
    return out.replace(urlInText, (match) => {
      // Punctuation after a URL in a sentence ("at redis://h:1: refused", "(postgres://h/db)") is not part of it.
      const url = match.replace(/[).,;:]+$/, "")
      return (mayHoldSecret(url) ? displayUrl(url) : url) + match.slice(url.length)
    })
  }
}

/** Without configured URLs: hides the userinfo and secret parameters of every URL in the text. */
export const redact = redactor([])

/** `value` with `scrub` applied to every string in it, for what is served (health checks, errors). */
export function redactDeep<T>(value: T, scrub: (text: string) => string): T {
  if (typeof value === "string") return scrub(value) as T
  if (Array.isArray(value)) return value.map((v) => redactDeep(v, scrub)) as T
  if (value && typeof value === "object") return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, redactDeep(v, scrub)])) as T
  return value
}
