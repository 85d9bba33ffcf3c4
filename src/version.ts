/** The one version of this build, from package.json: --version, the log, /metrics and the OpenAPI document say it. */
import pkg from "../package.json"

export const version: string = pkg.version
