/** inspect secret NAME: what the token in a client Secret says about itself; never the token. */
import { randomBytes } from 'node:crypto';
import { KubeApiError } from '../../kube/errors.ts';
import { SECRETS, type KubeObject } from '../../kube/resources.ts';
import { TOKEN_KEY } from '../../reconcilers/labels.ts';
import { escapeControls as e } from '../../policy/text.ts';
import { CliError, bool, str, strs, type Parsed } from '../args.ts';
import type { Command, Env } from '../command.ts';
import { TOKEN_REVIEWS, when } from '../common.ts';

interface SecretObject extends KubeObject {
  type?: string;
  data?: Record<string, string>;
}

interface Claims {
  iss?: string;
  sub?: string;
  aud?: string | string[];
  iat?: number;
  nbf?: number;
  exp?: number;
  jti?: string;
  'kubernetes.io'?: {
    namespace?: string;
    serviceaccount?: { name?: string; uid?: string };
    secret?: { name?: string; uid?: string };
    node?: { name?: string };
    pod?: { name?: string };
  };
}

interface TokenReview extends KubeObject {
  status?: { authenticated?: boolean; user?: { username?: string; groups?: string[] }; audiences?: string[]; error?: string };
}

/** The claims of a JWT, read without verifying it (the API server verifies: --review). */
function decodeClaims(token: string): Claims | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const parsed: unknown = JSON.parse(Buffer.from(parts[1] as string, 'base64url').toString('utf8'));
    return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Claims) : undefined;
  } catch {
    return undefined;
  }
}

const time = (seconds: number | undefined, now: number) => (seconds === undefined ? '-' : when(new Date(seconds * 1000).toISOString().replace('.000Z', 'Z'), now));

export const inspectSecret: Command = {
  name: 'inspect secret',
  args: 'NAME',
  summary: 'The claims of the token in a client Secret (subject, audiences, issued, expiry, bound anchor); --review asks TokenReview. Never prints the token',
  flags: [
    { name: 'review', kind: 'boolean', help: 'ask the API server whether it accepts the token (TokenReview; needs create on tokenreviews)' },
    { name: 'audience', kind: 'strings', value: 'AUD', help: 'audiences to review for (default the token\'s own)' },
    { name: 'output', short: 'o', kind: 'string', value: 'FORMAT', help: 'json' },
  ],
  async run(parsed: Parsed, env: Env) {
    const [name, ...rest] = parsed.positionals;
    if (name === undefined || rest.length > 0) throw new CliError('inspect secret takes one argument: the name of the Secret');
    const output = str(parsed, 'output');
    if (output !== undefined && output !== 'json') throw new CliError(`--output ${output}: only json is supported`);
    const cli = env.connect();
    let secret: SecretObject;
    try {
      secret = await cli.client.get<SecretObject>(SECRETS, cli.namespace, name);
    } catch (err) {
      if (err instanceof KubeApiError && err.statusCode === 404) throw new CliError(`secret "${name}" not found in namespace ${cli.namespace}`);
      throw err;
    }
    const encoded = secret.data?.[TOKEN_KEY];
    if (!encoded) throw new CliError(`secret ${cli.namespace}/${name} holds no token (key "${TOKEN_KEY}")${secret.type === 'tokenwarden.io/token' ? '; the client may be suspended or not Ready (kubectl tokenwarden status)' : ''}`);
    const token = Buffer.from(encoded, 'base64').toString('utf8');
    const claims = decodeClaims(token);
    if (claims === undefined) throw new CliError(`secret ${cli.namespace}/${name}: the value of "${TOKEN_KEY}" is not a JWT`);
    const k8s = claims['kubernetes.io'];
    const audiences = Array.isArray(claims.aud) ? claims.aud : claims.aud ? [claims.aud] : [];
    let review: TokenReview['status'] | undefined;
    let reviewedFor: string[] | undefined;
    if (bool(parsed, 'review')) {
      const wanted = strs(parsed, 'audience');
      // A one-off extra audience: the API server caches successful reviews for 10s by (token,
      // audiences), so without it a token revoked a moment ago could still be "authenticated".
      reviewedFor = [...(wanted.length ? wanted : audiences)];
      const nonce = `tokenwarden-inspect-${randomBytes(6).toString('hex')}`;
      try {
        const res = await cli.client.create<TokenReview>(TOKEN_REVIEWS, undefined, {
          apiVersion: 'authentication.k8s.io/v1',
          kind: 'TokenReview',
          spec: { token, audiences: [...reviewedFor, nonce] },
        } as TokenReview);
        review = res.status;
      } catch (err) {
        if (err instanceof KubeApiError && err.statusCode === 403) throw new CliError('you may not create TokenReviews (needs create on authentication.k8s.io tokenreviews, e.g. system:auth-delegator); run without --review to see the claims');
        throw err;
      }
    }
    const now = Date.now();
    const tokenwarden = {
      client: secret.metadata?.annotations?.['tokenwarden.io/client'],
      tier: secret.metadata?.annotations?.['tokenwarden.io/tier'],
      tokenId: secret.metadata?.annotations?.['tokenwarden.io/token-id'],
    };
    if (output === 'json') {
      env.out(JSON.stringify({
        secret: { namespace: cli.namespace, name, type: secret.type },
        ...tokenwarden,
        claims: {
          issuer: claims.iss, subject: claims.sub, audiences, issuedAt: claims.iat, notBefore: claims.nbf, expiresAt: claims.exp, id: claims.jti,
          namespace: k8s?.namespace, serviceAccount: k8s?.serviceaccount, boundSecret: k8s?.secret,
        },
        ...(review ? { review: { authenticated: review.authenticated === true, username: review.user?.username, groups: review.user?.groups, audiences: (review.audiences ?? []).filter((a) => reviewedFor?.includes(a)), error: review.error } } : {}),
      }, null, 2));
      return review && review.authenticated !== true ? 2 : 0;
    }
    env.out(`Secret:          ${e(`${cli.namespace}/${name} (${secret.type ?? 'Opaque'})`)}`);
    if (tokenwarden.client) env.out(`Client:          ${e(`${tokenwarden.client}, tier ${tokenwarden.tier ?? '-'}`)}`);
    env.out(`Subject:         ${e(`${claims.sub ?? '-'}`)}`);
    env.out(`ServiceAccount:  ${e(`${k8s?.namespace ?? '-'}/${k8s?.serviceaccount?.name ?? '-'} (uid ${k8s?.serviceaccount?.uid ?? '-'})`)}`);
    env.out(`Audiences:       ${e(`${audiences.join(', ') || '-'}`)}`);
    env.out(`Issuer:          ${e(`${claims.iss ?? '-'}`)}`);
    env.out(`Issued:          ${e(`${time(claims.iat, now)}`)}`);
    env.out(`Expires:         ${e(`${time(claims.exp, now)}`)}`);
    env.out(`Bound to:        ${e(`${k8s?.secret ? `Secret ${k8s.namespace}/${k8s.secret.name} (the anchor: deleting it revokes this token)` : '-'}`)}`);
    if (claims.jti) env.out(`Token ID:        ${e(`${claims.jti}`)}`);
    if (review) {
      env.out(`TokenReview:     ${e(`${review.authenticated ? `authenticated as ${review.user?.username} for ${(review.audiences ?? []).filter((a) => reviewedFor?.includes(a)).join(', ')}` : `NOT authenticated${review.error ? `: ${review.error}` : ''}`}`)}`);
      return review.authenticated ? 0 : 2;
    }
    return 0;
  },
};
