import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../../src/config.ts';

describe('--metrics-bind-address and --health-probe-bind-address', () => {
  it('default to :8080 and :8081 on every interface', () => {
    const config = loadConfig([], {});
    expect(config['metrics-bind-address']).toEqual({ host: undefined, port: 8080 });
    expect(config['health-probe-bind-address']).toEqual({ host: undefined, port: 8081 });
  });

  it('take flags over environment variables, and "0" disables', () => {
    const env = { TOKENWARDEN_METRICS_BIND_ADDRESS: '127.0.0.1:9090', TOKENWARDEN_HEALTH_PROBE_BIND_ADDRESS: '0' };
    expect(loadConfig([], env)['metrics-bind-address']).toEqual({ host: '127.0.0.1', port: 9090 });
    expect(loadConfig([], env)['health-probe-bind-address']).toBeNull();
    const config = loadConfig(['--metrics-bind-address=0', '--health-probe-bind-address', '[::1]:8081'], env);
    expect(config['metrics-bind-address']).toBeNull();
    expect(config['health-probe-bind-address']).toEqual({ host: '::1', port: 8081 });
  });

  it('refuse a bad value with one line naming the setting', () => {
    expect(() => loadConfig(['--metrics-bind-address', '8080'], {})).toThrow(ConfigError);
    expect(() => loadConfig(['--metrics-bind-address', '8080'], {})).toThrow(/^invalid --metrics-bind-address="8080": not host:port/);
    expect(() => loadConfig([], { TOKENWARDEN_HEALTH_PROBE_BIND_ADDRESS: ':99999' })).toThrow(/^invalid TOKENWARDEN_HEALTH_PROBE_BIND_ADDRESS=":99999": the port/);
    try {
      loadConfig([], { TOKENWARDEN_METRICS_BIND_ADDRESS: 'x y:1' });
    } catch (err) {
      expect((err as Error).message).not.toContain('\n');
    }
  });
});
