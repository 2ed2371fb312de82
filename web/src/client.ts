// The gateway client (grpc-web, generated from proto/) and the reading of its errors: every
// error carries google.rpc.ErrorInfo (a stable reason code), invalid fields come as
// google.rpc.BadRequest violations.
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { BadRequestSchema, ErrorInfoSchema } from "./gen/google/rpc/error_details_pb";
import { SignupService } from "./gen/tenantry/v1/signup_pb";

export type Gateway = Client<typeof SignupService>;

/** Where the page finds the gateway: `/config.json` when served by `tenantry dev`. */
export interface PageConfig {
  gateway: string;
  domain: string;
}

export async function loadConfig(): Promise<PageConfig> {
  const fallback = { gateway: "http://localhost:50051", domain: "erp.localhost" };
  try {
    const r = await fetch("/config.json", { cache: "no-store" });
    if (!r.ok) return fallback;
    return { ...fallback, ...((await r.json()) as Partial<PageConfig>) };
  } catch {
    return fallback;
  }
}

export function gateway(baseUrl: string): Gateway {
  return createClient(SignupService, createGrpcWebTransport({ baseUrl }));
}

/** What the page needs of a refusal. */
export interface Refusal {
  code: Code;
  reason: string;
  message: string;
  metadata: Record<string, string>;
  fields: { field: string; description: string; reason: string }[];
}

export function refusal(e: unknown): Refusal {
  const err = ConnectError.from(e);
  const info = err.findDetails(ErrorInfoSchema)[0];
  const bad = err.findDetails(BadRequestSchema)[0];
  return {
    code: err.code,
    reason: info?.reason ?? "",
    message: err.rawMessage,
    metadata: info?.metadata ?? {},
    fields: (bad?.fieldViolations ?? []).map((v) => ({
      field: v.field,
      description: v.description,
      reason: v.reason,
    })),
  };
}

export { Code };
