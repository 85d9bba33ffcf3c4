/** The closed set of error codes the API answers with, one HTTP status each: the decisions' refusals and the request's own. */
import { outcomes, type Rejection } from "./sale/outcomes"

const requestErrors = {
  invalid_request: 400,
  not_found: 404,
  method_not_allowed: 405,
  body_too_large: 413,
  url_too_long: 414,
  rate_limited: 429,
  internal: 500,
  unavailable: 503,
} as const

export type ErrorCode = Rejection | keyof typeof requestErrors

export const codeToStatus = Object.fromEntries([
  ...Object.entries(outcomes).filter(([, o]) => o.status !== 200).map(([code, o]) => [code, o.status]),
  ...Object.entries(requestErrors),
]) as Record<ErrorCode, number>

export const defaultMessages: Record<ErrorCode, string> = {
  invalid_request: "A parameter is missing or malformed.",
  unknown_item: "There is no such item in this sale.",
  code_not_found: "This code was never issued, or its hold has expired.",
  not_found: "There is nothing at this path.",
  method_not_allowed: "This path does not accept that method.",
  body_too_large: "The request's body is too large; no endpoint takes a body.",
  url_too_long: "The request's path and query are too long.",
  sold_out: "Every item of this sale is sold.",
  item_sold: "This item is sold.",
  item_reserved: "Another user holds this item.",
  code_used: "This code has already been used for a purchase.",
  user_limit: "You have reached the number of items one user may hold or buy in this sale.",
  rate_limited: "Too many requests from this client; try again after Retry-After seconds.",
  internal: "Something went wrong on our side.",
  unavailable: "The sale cannot decide right now; try again shortly.",
}

/** The request-level code answered with this status (each has its own status), e.g. 405 -> method_not_allowed. */
export const requestErrorOf = (status: number): ErrorCode | undefined => (Object.keys(requestErrors) as (keyof typeof requestErrors)[]).find((code) => requestErrors[code] === status)

export type ErrorBody = { error: ErrorCode; message: string }

export function errorBody(code: ErrorCode, message = defaultMessages[code]): ErrorBody {
  return { error: code, message }
}
