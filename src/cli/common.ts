/** What several commands share: the API calls of the plugin, client lookups, times, waiting. */
import type { Condition, ServiceAccountClient, TenantBinding, Tier } from '../api/index.ts';
import { TenantBinding as TenantBindingSchema, Tier as TierSchema } from '../api/index.ts';
import { KubeApiError } from '../kube/errors.ts';
import {
  SECRETS,
  SERVICE_ACCOUNT_CLIENTS,
  TENANT_BINDINGS,
  TIERS,
  resourceType,
  type KubeObject,
} from '../kube/resources.ts';
import { quote } from '../policy/text.ts';
import { readTokenClaims } from '../policy/token-claims.ts';
import { TOKEN_KEY } from '../reconcilers/labels.ts';
import { CliError } from './args.ts';
import type { Cli } from './context.ts';

export const SELF_SUBJECT_REVIEWS = resourceType('authentication.k8s.io', 'v1', 'selfsubjectreviews', 'SelfSubjectReview', false);
export const TOKEN_REVIEWS = resourceType('authentication.k8s.io', 'v1', 'tokenreviews', 'TokenReview', false);
export const CRDS = resourceType('apiextensions.k8s.io', 'v1', 'customresourcedefinitions', 'CustomResourceDefinition', false);
export const VAPS = resourceType('admissionregistration.k8s.io', 'v1', 'validatingadmissionpolicies', 'ValidatingAdmissionPolicy', false);
export const VAP_BINDINGS = resourceType('admissionregistration.k8s.io', 'v1', 'validatingadmissionpolicybindings', 'ValidatingAdmissionPolicyBinding', false);

/**
 * The reportingController of the operator's Events: REPORTING_CONTROLLER of src/controller/events.ts,
 * repeated here because that module brings the operator's logger into the plugin
 * (test/unit/cli.test.ts checks the two agree).
 */
export const OPERATOR_REPORTING_CONTROLLER = 'tokenwarden.io/operator';

/** The annotation `renew` sets: the operator issues a new token when it is newer than the newest token. */
export const RENEW_REQUESTED_AT_ANNOTATION = 'tokenwarden.io/renew-requested-at';

/** A client as the API server returns it (not validated: a plugin shows what is there). */
export type Client = ServiceAccountClient;

export interface Identity {
  username: string;
  uid?: string;
  groups: string[];
}

interface SelfSubjectReview extends KubeObject {
  status?: { userInfo?: { username?: string; uid?: string; groups?: string[] } };
}

/** Who the API server says the caller is (authentication.k8s.io/v1 SelfSubjectReview). */
export async function whoAmI(cli: Cli): Promise<Identity> {
  const review = await cli.client.create<SelfSubjectReview>(SELF_SUBJECT_REVIEWS, undefined, { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' });
  const info = review.status?.userInfo;
  if (!info?.username) throw new CliError('the API server did not say who you are (SelfSubjectReview returned no username)');
  return { username: info.username, ...(info.uid ? { uid: info.uid } : {}), groups: info.groups ?? [] };
}

/**
 * The groups a client of the caller declares: all of the caller's, but system:authenticated, which
 * every authenticated caller has and which no tier means.
 */
export function declarableGroups(identity: Identity): string[] {
  return identity.groups.filter((g) => g !== 'system:authenticated');
}

export async function getClient(cli: Cli, name: string): Promise<Client> {
  try {
    return await cli.client.get<Client>(SERVICE_ACCOUNT_CLIENTS, cli.namespace, name);
  } catch (err) {
    if (err instanceof KubeApiError && err.statusCode === 404) {
      throw new CliError(`serviceaccountclient "${name}" not found in namespace ${cli.namespace}`);
    }
    throw err;
  }
}

export function condition(client: { status?: { conditions?: Condition[] | undefined } | undefined }, type: string): Condition | undefined {
  return client.status?.conditions?.find((c) => c.type === type);
}

/** Ready=True for the client's current generation, with a token recorded. */
export function isReady(client: Client): boolean {
  const ready = condition(client, 'Ready');
  return ready?.status === 'True' && observedCurrent(client) && (client.status?.tokens?.length ?? 0) > 0;
}

/** Whether status describes the current spec. */
export function observedCurrent(client: Client): boolean {
  return client.status?.observedGeneration !== undefined && client.status.observedGeneration === client.metadata.generation;
}

interface SecretObject extends KubeObject {
  type?: string;
  data?: Record<string, string>;
}

/** The token in the client's Secret, checked to be the newest one status records; never logged. */
export async function currentToken(cli: Cli, client: Client): Promise<string | undefined> {
  const secretName = client.status?.secretName ?? client.spec.secretName ?? `${client.metadata.name}-token`;
  let secret: SecretObject;
  try {
    secret = await cli.client.get<SecretObject>(SECRETS, client.metadata.namespace, secretName);
  } catch (err) {
    if (err instanceof KubeApiError && err.statusCode === 404) return undefined;
    throw err;
  }
  const encoded = secret.data?.[TOKEN_KEY];
  if (!encoded) return undefined;
  const token = Buffer.from(encoded, 'base64').toString('utf8');
  const newest = client.status?.tokens?.[0];
  const claims = readTokenClaims(token);
  if (newest !== undefined && claims?.boundSecretName !== newest.id) return undefined;
  return token;
}

/** A short, non-reversible name for a token in output: never the token itself. */
export function tokenFingerprint(token: string): string {
  // FNV-1a is enough to tell two tokens apart on screen; it reveals nothing usable.
  let h = 0x811c9dc5;
  for (let i = 0; i < token.length; i++) {
    h ^= token.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h.toString(16).padStart(8, '0');
}

/** Tiers and the namespace's TenantBindings, validated with the operator's own schemas (defaults applied). */
export async function listTiers(cli: Cli, selector: string | undefined): Promise<Tier[]> {
  const { items } = await cli.client.list<KubeObject>(TIERS, undefined, selector ? { labelSelector: selector } : {});
  return items
    .filter((t) => t.metadata?.deletionTimestamp === undefined)
    .flatMap((t) => {
      const parsed = TierSchema.safeParse(t);
      return parsed.success ? [parsed.data] : [];
    });
}

export async function listBindings(cli: Cli, namespace: string, selector: string | undefined): Promise<TenantBinding[]> {
  const { items } = await cli.client.list<KubeObject>(TENANT_BINDINGS, namespace, selector ? { labelSelector: selector } : {});
  return items.flatMap((b) => {
    const parsed = TenantBindingSchema.safeParse(b);
    return parsed.success ? [parsed.data] : [];
  });
}

/** "3h59m", "45s": a duration for humans. */
export function humanDuration(ms: number): string {
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${s % 60 ? `${s % 60}s` : ''}`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h${m % 60 ? `${m % 60}m` : ''}`;
  return `${Math.floor(h / 24)}d${h % 24 ? `${h % 24}h` : ''}`;
}

/** "2026-11-23T16:36:52Z (in 3h59m)" or "(5m ago)". */
export function when(iso: string | undefined, now = Date.now()): string {
  if (!iso) return '-';
  const t = Date.parse(iso);
  if (Number.isNaN(t)) return iso;
  return `${iso.replace(/\.\d+Z$/, 'Z')} (${t >= now ? `in ${humanDuration(t - now)}` : `${humanDuration(now - t)} ago`})`;
}

/** Polls `probe` every `intervalMs` until it returns a value; undefined when it still has none at `timeoutMs`. */
export async function poll<T>(probe: () => Promise<T | undefined>, timeoutMs: number, intervalMs = 500): Promise<T | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    const left = deadline - Date.now();
    if (left <= 0) return undefined;
    // The last probe comes at the deadline, not an interval before it.
    await new Promise((resolve) => setTimeout(resolve, Math.min(intervalMs, left)));
  }
}

/** A plain text table, columns padded as kubectl pads them (three spaces). */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] as number))).join('   ').trimEnd();
  return [line(header), ...rows.map(line)].join('\n');
}

/**
 * What to do about a client that is not Ready, by the reason of its Ready condition (or the
 * operator not having caught up at all).
 */
export function hintFor(client: Client): string | undefined {
  if (client.metadata.deletionTimestamp) return 'the client is being deleted; its finalizer revokes its tokens first (the operator must be running)';
  if (!client.status?.conditions?.length) return 'the operator has not reconciled this client yet: is it running? (kubectl tokenwarden check api)';
  if (!observedCurrent(client)) return 'the operator has not caught up with the latest change yet; if this lasts, check it is running (kubectl tokenwarden check api)';
  const ready = condition(client, 'Ready');
  if (ready?.status === 'True') return undefined;
  const name = client.metadata.name;
  // Quoted and escaped: spec.tierRef.name of a client admitted before the CRD's pattern may hold anything.
  const tier = quote(client.spec.tierRef?.name ?? '');
  switch (ready?.reason) {
    case 'TierNotAllowed':
      return `the subject does not qualify for tier ${tier} here: ask a tenant admin for a TenantBinding granting it in ${client.metadata.namespace}, or remove spec.tierRef to get the tier you qualify for (kubectl tokenwarden whoami shows it)`;
    case 'TierNotFound':
      return `tier ${tier} does not exist: check the name (kubectl get tiers) or remove spec.tierRef`;
    case 'NoMatchingTier':
      return 'no tier matches the subject and there is no default tier: ask a platform admin for a TenantBinding, a Tier with one of your groups, or a default Tier';
    case 'QuotaExceeded':
      return `the TenantBinding's maxClients is taken: delete a client you no longer use in ${client.metadata.namespace}, or ask a tenant admin to raise maxClients`;
    case 'Suspended':
      return `suspended on purpose; resume with: kubectl tokenwarden resume ${name} -n ${client.metadata.namespace}`;
    case 'Moving':
      return 'moving to another tier: the old tokens are revoked and a new one follows within seconds';
    case 'WaitingForTier':
      return 'the tier is not ready yet (its namespace or ServiceAccount); see kubectl describe tier';
    case 'IssuanceFailed':
    case 'RenewalFailed':
      return `the API server refused the TokenRequest (message above); the operator retries with backoff on its own${
        client.status?.failedAttempts ? ` (${client.status.failedAttempts} failed attempt(s) so far)` : ''
      }; check the operator's RBAC, admission policies and API server load`;
    case 'SecretConflict':
      return `Secret ${quote(client.spec.secretName ?? `${name}-token`)} belongs to something else: delete or rename that Secret, or set spec.secretName`;
    case 'SecretInvalid':
      return 'the Secret at spec.secretName cannot hold the token: see the message, then delete that Secret or set spec.secretName';
    case 'InvalidSpec':
      return 'the spec breaks the API schema the operator validates against: fix the field the message names';
    case 'ServiceAccountCollision':
      return 'a ServiceAccount of another user has the name this user needs: an admin must delete it (docs/operator-contract.md)';
    default:
      return ready?.message ? undefined : 'no Ready condition yet: the operator may not be running (kubectl tokenwarden check api)';
  }
}
