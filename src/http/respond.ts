/** The one place that turns outcomes and errors into HTTP responses: every error is {"error", "message"} with its code's status. */
import { codeToStatus, errorBody, type ErrorCode } from "../errors"

export const json = { "content-type": "application/json" }

/** The error bodies with their default messages, serialised once: most answers in a rush are these. */
const defaultBodies = Object.fromEntries(Object.keys(codeToStatus).map((code) => [code, JSON.stringify(errorBody(code as ErrorCode))])) as Record<ErrorCode, string>

/** The code of each error answer made here, so that whoever counts it knows it whatever its status shares. */
export const codeOf = new WeakMap<Response, ErrorCode>()

/** An error answer: its code's status and the body {"error", "message"}, plus `extra` fields (next_sale, fields, ...). */
export function fail(code: ErrorCode, message?: string, headers?: Record<string, string>, extra?: Record<string, unknown>): Response {
  const body = message === undefined && !extra ? defaultBodies[code] : JSON.stringify({ ...errorBody(code, message), ...extra })
  const response = new Response(body, { status: codeToStatus[code], headers: headers ? { ...json, ...headers } : json })
  codeOf.set(response, code)
  return response
}

/** A decision's refusal, with its default message: the hot path's answer, counted by its caller (no lookup kept). */
export function refuse(code: ErrorCode): Response {
  return new Response(defaultBodies[code], { status: codeToStatus[code], headers: json })
}

export { iso } from "../sale/clock"
