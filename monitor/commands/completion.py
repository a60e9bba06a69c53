"""`portal-monitor completion bash|zsh`: a shell completion script made from the parser itself,
so it always knows every command, action and option of this version."""

from __future__ import annotations

import argparse

SHELLS = ("bash", "zsh")


def register(subcommands: argparse._SubParsersAction) -> None:
    parser = subcommands.add_parser(
        "completion",
        help="print a shell completion script (bash or zsh)",
        description="Print a completion script for SHELL. Bash: "
        "`portal-monitor completion bash > /etc/bash_completion.d/portal-monitor` (or "
        "`source <(portal-monitor completion bash)` in ~/.bashrc). Zsh: "
        "`portal-monitor completion zsh > \"${fpath[1]}/_portal-monitor\"`.",
    )
    parser.add_argument("shell", choices=SHELLS, metavar="SHELL", help="bash or zsh")
    parser.set_defaults(func=completion)


def tree(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], tuple[list[str], dict]]:
    """path of words -> (words that may follow: subcommands and options, option -> its choices)."""
    words: list[str] = []
    choices: dict[str, list[str]] = {}
    found: dict = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                words.append(name)
                found.update(tree(child, path + (name,)))
        elif action.option_strings and action.help is not argparse.SUPPRESS:
            words.extend(o for o in action.option_strings if o.startswith("--"))
            if action.choices:
                for option in action.option_strings:
                    choices[option] = [str(c) for c in action.choices]
        elif not action.option_strings and action.choices:
            words.extend(str(c) for c in action.choices)
    found[path] = (words, choices)
    return found


def bash_script(parser: argparse.ArgumentParser) -> str:
    cases, option_cases = [], []
    for path, (words, choices) in sorted(tree(parser).items()):
        key = " ".join(path)
        cases.append(f'        "{key}") words="{" ".join(words)}" ;;')
        for option, values in choices.items():
            option_cases.append(f'        "{key}|{option}") COMPREPLY=($(compgen -W "{" ".join(values)}" -- "$cur")); return ;;')
    commands = {" ".join(p) for p in tree(parser)}
    return f"""# bash completion for portal-monitor (portal-monitor completion bash)
_portal_monitor() {{
    local cur prev path="" w words
    cur="${{COMP_WORDS[COMP_CWORD]}}"
    prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    for w in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        case "$w" in -*) continue ;; esac
        if _portal_monitor_known "${{path:+$path }}$w"; then path="${{path:+$path }}$w"; fi
    done
    case "$path|$prev" in
{chr(10).join(option_cases)}
    esac
    case "$path" in
{chr(10).join(cases)}
        *) words="" ;;
    esac
    case "$prev" in
        --config|-c|--dead-letters|--alerts-out|--actions-out|--accounts|--rejects|--from-events|--records)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    COMPREPLY=($(compgen -W "$words" -- "$cur"))
    [ ${{#COMPREPLY[@]}} -eq 0 ] && COMPREPLY=($(compgen -f -- "$cur"))
}}
_portal_monitor_known() {{
    case "$1" in
{chr(10).join(f'        "{c}") return 0 ;;' for c in sorted(commands) if c)}
    esac
    return 1
}}
complete -F _portal_monitor portal-monitor
"""


def zsh_script(parser: argparse.ArgumentParser) -> str:
    return "#compdef portal-monitor\n# zsh completion for portal-monitor (portal-monitor completion zsh)\n" \
        "autoload -U +X bashcompinit && bashcompinit\n" + bash_script(parser)


def completion(args: argparse.Namespace) -> int:
    from monitor.commands.cli import build_parser

    parser = build_parser()
    print(bash_script(parser) if args.shell == "bash" else zsh_script(parser), end="")
    return 0
