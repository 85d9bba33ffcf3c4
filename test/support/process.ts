/** The server as a separate process (from source or the compiled binary), for tests that kill it or its services. */
import { join } from "node:path"

export type ServerProcess = {
  base: string
  proc: ReturnType<typeof Bun.spawn>
  output: () => string
  /** Sends the signal and waits for the process to exit; resolves to its exit code. */
  stop(signal?: NodeJS.Signals | number): Promise<number>
}

export const sourceCommand = ["bun", join(import.meta.dir, "..", "..", "src", "main.ts")]

/**
 * Starts the server with `env` over this process's environment, and resolves once its engine is ready (the log
 * says so), or, with `ready: false`, as soon as it listens. Admission control is off unless `env` sets
 * RATE_LIMIT_PER_USER: these servers serve robots (the fault tests' shoppers make ~100 requests per second per user).
 */
export async function startServer(env: Record<string, string>, command = sourceCommand, cwd?: string, { ready = true } = {}): Promise<ServerProcess> {
  const proc = Bun.spawn(command, { env: { ...process.env, PORT: "0", RATE_LIMIT_PER_USER: "0", ...env }, stdout: "pipe", stderr: "pipe", cwd })
  let output = ""
  const base = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${output}`)), 20_000)
    const read = async (stream: ReadableStream<Uint8Array>) => {
      const decoder = new TextDecoder()
      for await (const chunk of stream) {
        output += decoder.decode(chunk)
        const match = /listening on http:\/\/(\S+):(\d+)\b/.exec(output)
        if (match && (!ready || /engine \w+ ready/.test(output))) {
          clearTimeout(timer)
          // Every interface includes loopback.
          const host = ["0.0.0.0", "[::]"].includes(match[1]!) ? "127.0.0.1" : match[1]!
          resolve(`http://${host}:${match[2]}`)
        }
      }
    }
    read(proc.stdout as ReadableStream<Uint8Array>)
    read(proc.stderr as ReadableStream<Uint8Array>)
    proc.exited.then((code) => {
      clearTimeout(timer)
      reject(new Error(`server exited with ${code} before listening:\n${output}`))
    })
  })
  return {
    base,
    proc,
    output: () => output,
    async stop(signal = "SIGTERM") {
      proc.kill(signal)
      return proc.exited
    },
  }
}

export async function request(base: string, method: string, path: string): Promise<{ status: number; body: any; headers: Headers }> {
  const response = await fetch(`${base}${path}`, { method })
  return { status: response.status, headers: response.headers, body: await response.json() }
}

export type RawAnswer = { status: number; headers: Record<string, string>; body: string; json: any }

/**
 * Sends bytes as they are, for what fetch() would tidy first (dot segments, odd spellings) or refuse to send
 * (huge heads), and reads the one answer on the connection.
 */
export async function rawRequest(base: string, head: string, body = ""): Promise<RawAnswer> {
  const { hostname, port } = new URL(base)
  const chunks: Buffer[] = []
  const text = await new Promise<string>((resolve, reject) => {
    let done = false
    const finish = () => {
      if (done) return
      done = true
      resolve(Buffer.concat(chunks).toString("latin1"))
    }
    Bun.connect({
      hostname,
      port: Number(port),
      socket: {
        open(socket) {
          socket.write(`${head}\r\nconnection: close\r\n\r\n${body}`)
          socket.flush()
        },
        data(socket, data) {
          chunks.push(Buffer.from(data))
          const answer = Buffer.concat(chunks).toString("latin1")
          const end = answer.indexOf("\r\n\r\n")
          const length = /\r\ncontent-length: *(\d+)/i.exec(answer.slice(0, end))
          if (end >= 0 && length && answer.length - end - 4 >= Number(length[1])) {
            finish()
            socket.end()
          }
        },
        close: finish,
        error: (_, error) => (chunks.length ? finish() : reject(error)),
      },
    }).catch(reject)
  })
  const end = text.indexOf("\r\n\r\n")
  const [statusLine = "", ...lines] = text.slice(0, end < 0 ? text.length : end).split("\r\n")
  const headers = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf(":")).toLowerCase(), l.slice(l.indexOf(":") + 1).trim()]))
  const payload = end < 0 ? "" : text.slice(end + 4)
  let json: any
  try {
    json = JSON.parse(payload)
  } catch {}
  return { status: Number(statusLine.split(" ")[1]), headers, body: payload, json }
}

/** Runs the server (with `args`) until it exits on its own (within 20 s), for settings it must refuse. */
export async function exitOf(env: Record<string, string>, args: string[] = []): Promise<{ code: number; output: string }> {
  const proc = Bun.spawn([...sourceCommand, ...args], { env: { ...process.env, PORT: "0", ...env }, stdout: "pipe", stderr: "pipe" })
  const timer = setTimeout(() => proc.kill(9), 20_000)
  const [out, err, code] = await Promise.all([new Response(proc.stdout).text(), new Response(proc.stderr).text(), proc.exited])
  clearTimeout(timer)
  return { code, output: out + err }
}
