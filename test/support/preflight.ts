/**
 * Before any test: the packages the suite runs (redis-server, postgresql, chromium). As root on Debian the
 * missing ones are installed from apt, as .ci/run does; otherwise the run stops at once with the command to
 * run. Chromium alone is optional off CI: without it the browser tests skip (test/support/browser.ts).
 */
import { chromiumPath } from "./browser"
import { postgresBin } from "./services"

const present = {
  "redis-server": () => Bun.which("redis-server") !== null && Bun.which("redis-cli") !== null,
  postgresql: () => {
    try {
      return Boolean(postgresBin())
    } catch {
      return false
    }
  },
  chromium: () => Bun.file(chromiumPath).size > 0,
}

export function preflight(): void {
  const missing = (Object.keys(present) as (keyof typeof present)[]).filter((name) => !present[name]())
  if (missing.length === 0) return
  const command = `apt-get install -y ${missing.join(" ")}`
  if (process.getuid?.() === 0 && Bun.which("apt-get")) {
    console.error(`the tests need ${missing.join(", ")}: installing (apt-get update && ${command})`)
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" }
    const update = Bun.spawnSync(["apt-get", "update", "-qq"], { env, stdout: "ignore", stderr: "inherit" })
    const install = update.exitCode === 0 && Bun.spawnSync(["apt-get", "install", "-y", "-qq", "--no-install-recommends", ...missing], { env, stdout: "ignore", stderr: "inherit" })
    if (install && install.exitCode === 0) return
    console.error(`could not install ${missing.join(", ")}; run  ${command}  and then  bun run test`)
    process.exit(1)
  }
  const required = missing.filter((name) => name !== "chromium" || process.env.CI === "true")
  if (required.length === 0) return
  console.error(`the tests need ${missing.join(", ")}: run  sudo ${command}  and then  bun run test`)
  process.exit(1)
}
