/** The closed set of error codes the API answers with, one HTTP status each: the decisions' refusals and the request's own. */
import { outcomes, type Rejection } from "./sale/outcomes"

const requestErrors = {
  invalid_request: 400,
  unauthorized: 401,
  not_found: 404,
  method_not_allowed: 405,
  no_active_sale: 409,
  sale_overlaps: 409,
  sale_started: 409,
  sale_ended: 409,
  planned_sales_off: 409,
  stock_in_use: 409,
  not_auditable: 409,
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
  unauthorized: "This needs the operator's bearer token: Authorization: Bearer <ADMIN_TOKEN>.",
  no_active_sale: "No sale is open now.",
  sale_paused: "The sale is paused: no new holds are granted for now (holds already granted can still be bought).",
  sale_overlaps: "The sale would overlap another: one sale is open at a time.",
  sale_started: "The sale has started: it can be ended, not deleted.",
  sale_ended: "The sale is over.",
  planned_sales_off: "This server runs the recurring schedule: sales are planned only with SALE_SCHEDULE=planned.",
  stock_in_use: "An item's stock cannot go below a unit that is sold or held.",
  not_auditable: "The sale cannot be audited now: it must be over, with every hold expired and written.",
  unknown_item: "There is no such item in this sale.",
  code_not_found: "This code was never issued, or its hold has expired.",
  not_found: "There is nothing at this path.",
  method_not_allowed: "This path does not accept that method.",
  body_too_large: "The request's body is too large; no endpoint takes a body.",
  url_too_long: "The request's path and query are too long.",
  sold_out: "Every item of this sale is sold.",
  item_sold: "Every unit of this item is sold.",
  item_reserved: "Every unsold unit of this item is held by other users; one may come back when a hold expires.",
  code_used: "This code has already been used for a purchase.",
  user_limit: "You have reached the number of items one user may hold or buy in this sale.",
  rate_limited: "Too many requests from this client; try again after Retry-After seconds.",
  internal: "Something went wrong on our side.",
  unavailable: "The sale cannot decide right now; try again shortly.",
}

/** Request-level codes that are the only one of their status, e.g. 405 -> method_not_allowed: what an answer built elsewhere is counted as. */
const onlyOfStatus = new Map<number, ErrorCode>()
for (const [code, status] of Object.entries(codeToStatus)) {
  const shared = Object.values(codeToStatus).filter((s) => s === status).length > 1
  if (!shared && code in requestErrors) onlyOfStatus.set(status, code as ErrorCode)
}
export const requestErrorOf = (status: number): ErrorCode | undefined => onlyOfStatus.get(status)

export type ErrorBody = { error: ErrorCode; message: string }

export function errorBody(code: ErrorCode, message = defaultMessages[code]): ErrorBody {
  return { error: code, message }
}
