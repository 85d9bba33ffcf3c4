/** The compiled executable (`bun build --compile`), built once per test run into a temp dir, for the suites that run it. */
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"

let built: Promise<{ dir: string; binary: string }> | undefined

export function compiledBinary(): Promise<{ dir: string; binary: string }> {
  built ??= (async () => {
    const dir = mkdtempSync(join(tmpdir(), "fs-bin-"))
    const binary = join(dir, "flashsale")
    const build = Bun.spawn(["bun", "build", join(import.meta.dir, "..", "..", "src", "main.ts"), "--compile", "--minify", "--outfile", binary], { stdout: "ignore", stderr: "pipe" })
    const [err, code] = await Promise.all([new Response(build.stderr).text(), build.exited])
    if (code !== 0) throw new Error(`build failed: ${err}`)
    process.on("exit", () => rmSync(dir, { recursive: true, force: true }))
    return { dir, binary }
  })()
  return built
}
