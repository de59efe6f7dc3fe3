/** Token lifecycle counters, per tier. prom-client wiring lives with the metrics server. */
export interface TokenMetrics {
  issued(tier: string): void;
  rotated(tier: string): void;
  revoked(tier: string, count: number): void;
}

export const noopTokenMetrics: TokenMetrics = {
  issued: () => {},
  rotated: () => {},
  revoked: () => {},
};
