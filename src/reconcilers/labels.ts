/** Labels, annotations, types and finalizers of the objects tokenwarden owns (docs/operator-contract.md). */
export const MANAGED_BY = 'app.kubernetes.io/managed-by';
export const MANAGER = 'tokenwarden';
export const TIER_LABEL = 'tokenwarden.io/tier';
export const CLIENT_LABEL = 'tokenwarden.io/client';
export const CLIENT_NAMESPACE_LABEL = 'tokenwarden.io/client-namespace';
export const CLIENT_NAME_LABEL = 'tokenwarden.io/client-name';
export const CLIENT_UID_LABEL = 'tokenwarden.io/client-uid';
/** On anchors: the scope (policy/service-account-use.ts instanceScope) of the instance that made them. */
export const SCOPE_LABEL = 'tokenwarden.io/scope';

export const USER_ANNOTATION = 'tokenwarden.io/user';
/** On Tiers: the scope of the one instance that manages the Tier's namespace, access, sweep and status. */
export const MANAGING_SCOPE_ANNOTATION = 'tokenwarden.io/managed-by-scope';
export const CLIENT_ANNOTATION = 'tokenwarden.io/client';
export const TOKEN_ID_ANNOTATION = 'tokenwarden.io/token-id';
export const EXPIRES_AT_ANNOTATION = 'tokenwarden.io/expires-at';
export const RENEW_AT_ANNOTATION = 'tokenwarden.io/renew-at';
export const AUDIENCES_ANNOTATION = 'tokenwarden.io/requested-audiences';
export const EXPIRATION_ANNOTATION = 'tokenwarden.io/requested-expiration-seconds';
export const REQUESTS_PER_MINUTE_ANNOTATION = 'tokenwarden.io/requests-per-minute';
export const TOKENS_PER_MINUTE_ANNOTATION = 'tokenwarden.io/tokens-per-minute';

export const ANCHOR_SECRET_TYPE = 'tokenwarden.io/anchor';
export const TOKEN_SECRET_TYPE = 'tokenwarden.io/token';
export const TOKEN_KEY = 'token';

/** Tier namespaces hold ServiceAccounts and anchors only (access/tier-namespaces.yaml refuses Pods there). */
export const POD_SECURITY_LABELS = { 'pod-security.kubernetes.io/enforce': 'restricted', 'pod-security.kubernetes.io/warn': 'restricted' } as const;

export const CLIENT_FINALIZER = 'tokenwarden.io/revoke-tokens';
export const TIER_FINALIZER = 'tokenwarden.io/cleanup';

export const MANAGED_SELECTOR = `${MANAGED_BY}=${MANAGER}`;
