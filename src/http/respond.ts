/** The one place that turns outcomes and errors into HTTP responses: every error is {"error", "message"} with its code's status. */
import { codeToStatus, errorBody, type ErrorCode } from "../errors"

export const json = { "content-type": "application/json" }

/** The error bodies with their default messages, serialised once: most answers in a rush are these. */
const defaultBodies = Object.fromEntries(Object.keys(codeToStatus).map((code) => [code, JSON.stringify(errorBody(code as ErrorCode))])) as Record<ErrorCode, string>

export function fail(code: ErrorCode, message?: string, headers?: Record<string, string>): Response {
  const body = message === undefined ? defaultBodies[code] : JSON.stringify(errorBody(code, message))
  return new Response(body, { status: codeToStatus[code], headers: headers ? { ...json, ...headers } : json })
}

export { iso } from "../sale/clock"
