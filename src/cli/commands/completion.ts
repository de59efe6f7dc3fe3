/** completion bash|zsh: a shell completion script for kubectl-tokenwarden (and `kubectl tokenwarden`). */
import { CliError, GLOBAL_FLAGS, type Parsed } from '../args.ts';
import type { Command, Env } from '../command.ts';

function bash(commands: readonly Command[]): string {
  const COMMAND_NAMES = commands.map((c) => c.name);
  const COMMAND_FLAGS = Object.fromEntries(commands.map((c) => [c.name, c.flags.flatMap((f) => [`--${f.name}`, ...(f.short ? [`-${f.short}`] : [])])]));
  const globals = GLOBAL_FLAGS.flatMap((f) => [`--${f.name}`, ...(f.short ? [`-${f.short}`] : [])]).join(' ');
  const cases = Object.entries(COMMAND_FLAGS)
    .map(([name, flags]) => `    ${JSON.stringify(name)}) flags="${flags.join(' ')}" ;;`)
    .join('\n');
  const firstWords = [...new Set(COMMAND_NAMES.map((n) => n.split(' ')[0]))].join(' ');
  return `# bash completion for kubectl-tokenwarden: source <(kubectl-tokenwarden completion bash)
_kubectl_tokenwarden() {
  local cur="\${COMP_WORDS[COMP_CWORD]}" words=() w
  for w in "\${COMP_WORDS[@]:1:COMP_CWORD-1}"; do [[ $w == -* ]] || words+=("$w"); done
  local cmd="\${words[0]}"
  [[ $cmd == inspect || $cmd == check ]] && cmd="$cmd \${words[1]}"
  if [[ \${#words[@]} -eq 0 ]]; then
    COMPREPLY=($(compgen -W "${firstWords}" -- "$cur")); return
  fi
  if [[ \${#words[@]} -eq 1 && ( $cmd == inspect || $cmd == check ) ]]; then
    [[ $cmd == inspect ]] && COMPREPLY=($(compgen -W "secret" -- "$cur")) || COMPREPLY=($(compgen -W "api" -- "$cur")); return
  fi
  local flags=""
  case "$cmd" in
${cases}
  esac
  if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W "$flags ${globals}" -- "$cur")); return; fi
  case "$cmd" in
    status|token|renew|revoke|suspend|resume)
      COMPREPLY=($(compgen -W "$(kubectl get serviceaccountclients -o name "\${COMP_WORDS[@]:1:COMP_CWORD-1}" 2>/dev/null | sed 's|.*/||')" -- "$cur")) ;;
    completion) COMPREPLY=($(compgen -W "bash zsh" -- "$cur")) ;;
  esac
}
complete -F _kubectl_tokenwarden kubectl-tokenwarden
`;
}

function zsh(commands: readonly Command[]): string {
  return `#compdef kubectl-tokenwarden
# zsh completion for kubectl-tokenwarden: source <(kubectl-tokenwarden completion zsh)
autoload -U +X bashcompinit && bashcompinit
${bash(commands)}`;
}

/** The command, given the list it completes (which includes itself). */
export const completionCommand = (commands: () => readonly Command[]): Command => ({
  name: 'completion',
  args: 'bash|zsh',
  summary: 'A shell completion script (source <(kubectl-tokenwarden completion bash))',
  flags: [],
  async run(parsed: Parsed, env: Env) {
    const [shell, ...rest] = parsed.positionals;
    if (rest.length > 0 || (shell !== 'bash' && shell !== 'zsh')) throw new CliError('completion takes one argument: bash or zsh');
    env.out(shell === 'bash' ? bash(commands()) : zsh(commands()));
    return 0;
  },
});
