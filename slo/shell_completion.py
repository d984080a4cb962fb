"""Shell completion for slo: a bash function (zsh runs it through bashcompinit) generated from the parsers.

It completes the verbs, each verb's flags, the choices of a flag that has them, and
the config keys as ``--key=`` after the verbs that take overrides; anything else
completes as a file name.
"""

from __future__ import annotations

import argparse
import shlex

ZSH_PREAMBLE = "#compdef slo\nautoload -U +X bashcompinit && bashcompinit\n"


def flags(parser: argparse.ArgumentParser) -> list[str]:
    return sorted(s for action in parser._actions for s in action.option_strings)


def choices(parser: argparse.ArgumentParser) -> dict[str, list[str]]:
    """flag -> its choices, for the flags that take one of a fixed set."""
    return {s: [str(c) for c in action.choices] for action in parser._actions if action.choices
            for s in action.option_strings}


def _words(items) -> str:
    return shlex.quote(" ".join(items))


def script(shell: str, parsers: dict[str, argparse.ArgumentParser], override_commands: list[str],
           keys: list[str]) -> str:
    """The completion script for shell ('bash' or 'zsh')."""
    flag_cases = [f"        {name}) opts={_words(flags(parser))} ;;" for name, parser in parsers.items()]
    value_cases = [f"        {name}:{flag}) values={_words(values)} ;;"
                   for name, parser in parsers.items() for flag, values in choices(parser).items()]
    shells = [a for a in parsers["completion"]._actions if a.dest == "shell"][0].choices
    body = f"""_slo() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}" cmd="${{COMP_WORDS[1]}}"
    local opts="" values="" keys={_words('--' + k + '=' for k in keys)}
    COMPREPLY=()
    if [ "$COMP_CWORD" -eq 1 ]; then
        COMPREPLY=($(compgen -W {_words([*parsers, '--help', '--version'])} -- "$cur"))
        return 0
    fi
    case "$cmd:$prev" in
{chr(10).join(value_cases)}
    esac
    if [ -z "$values" ] && [ "$cmd" = completion ] && [ "$COMP_CWORD" -eq 2 ]; then
        values={_words(shells)}
    fi
    if [ -n "$values" ]; then
        COMPREPLY=($(compgen -W "$values" -- "$cur"))
        return 0
    fi
    case "$cmd" in
{chr(10).join(flag_cases)}
    esac
    if [[ "$cur" == -* ]]; then
        case " {' '.join(override_commands)} " in
            *" $cmd "*) opts="$opts $keys" ;;
        esac
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
        if [[ "${{COMPREPLY[0]}}" == *= ]] && type compopt >/dev/null 2>&1; then
            compopt -o nospace 2>/dev/null
        fi
        return 0
    fi
    COMPREPLY=($(compgen -f -- "$cur"))
}}
complete -o default -F _slo slo
"""
    return (ZSH_PREAMBLE if shell == "zsh" else "") + body
