/** Builds the EC2 client: region and credentials from the SDK's standard provider chain. */
import { EC2Client } from "@aws-sdk/client-ec2";

/** Options of `makeEc2Client`. */
export interface Ec2ClientOptions {
  region?: string;
  /** An emulator's URL; AWS when absent. */
  endpoint?: string;
  /** Static credentials, for emulators only; otherwise the default chain (IRSA, Pod Identity, env). */
  credentials?: { accessKeyId: string; secretAccessKey: string };
}

/**
 * An EC2 client that does not retry by itself: the adapter retries with its own token bucket and
 * jitter, and two layers of retries would multiply calls under throttling.
 */
export function makeEc2Client(o: Ec2ClientOptions): EC2Client {
  return new EC2Client({
    region: o.region ?? "us-east-1",
    maxAttempts: 1,
    ...(o.endpoint ? { endpoint: o.endpoint } : {}),
    ...(o.credentials ? { credentials: o.credentials } : {}),
  });
}
