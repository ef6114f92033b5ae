# bash completion for coffer.
# Commands and options come from coffer itself (`coffer help`, `coffer
# COMMAND --help`), so they never drift from the binary; set ids from
# `coffer sets -p POLICY --json` when a policy is already on the line.

_coffer_commands() {
    coffer --help 2>/dev/null | awk '/^commands:/ {on = 1; next} on && /^  [a-z]/ {print $1} /^$/ && on {on = 0}'
}

_coffer_options() { # _coffer_options COMMAND [SUBCOMMAND]
    coffer "$@" --help 2>&1 | grep -oE -- '--[a-z][a-z0-9-]*' | sort -u
}

_coffer_policy_files() { # YAML files and directories, for -p
    local f
    while IFS= read -r f; do
        if [ -d "$f" ]; then
            echo "$f/"
        else
            case "$f" in *.yaml | *.yml) echo "$f" ;; esac
        fi
    done < <(compgen -f -- "$1")
}

_coffer_policy_on_line() {
    local i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
        -p | --policy) echo "${COMP_WORDS[i + 1]}"; return ;;
        --policy=*) echo "${COMP_WORDS[i]#--policy=}"; return ;;
        esac
    done
}

_coffer_set_ids() {
    local policy
    policy=$(_coffer_policy_on_line)
    [ -n "$policy" ] || return
    coffer --no-progress sets -p "$policy" --json 2>/dev/null |
        grep -oE '"id" *: *"[0-9]{8}T[0-9]{6}Z-[0-9a-f]+"' | grep -oE '[0-9]{8}T[0-9]{6}Z-[0-9a-f]+'
}

_coffer() {
    local cur prev cmd i
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
    cmd=
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
        --plugin-dir) ((i++)) ;;
        --repo) ((i++)) ;;
        -*) ;;
        *) cmd=${COMP_WORDS[i]}; break ;;
        esac
    done
    case "$prev" in
    -p | --policy)
        COMPREPLY=($(_coffer_policy_files "$cur"))
        return ;;
    --to | --plugin-dir)
        COMPREPLY=($(compgen -d -- "$cur"))
        return ;;
    --repo)
        COMPREPLY=($(compgen -d -- "$cur"))
        return ;;
    --set)
        COMPREPLY=($(compgen -W "latest $(_coffer_set_ids)" -- "$cur"))
        return ;;
    esac
    if [ -z "$cmd" ]; then
        COMPREPLY=($(compgen -W "$(_coffer_commands) --help --version --verbose --quiet --no-progress --plugin-dir --repo" -- "$cur"))
        return
    fi
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$(_coffer_options "$cmd")" -- "$cur"))
    elif [ "$cmd" = forget ]; then
        COMPREPLY=($(compgen -W "$(_coffer_set_ids)" -- "$cur"))
    elif [ "$cmd" = help ]; then
        COMPREPLY=($(compgen -W "$(_coffer_commands)" -- "$cur"))
    elif [ "$cmd" = policy ]; then
        COMPREPLY=($(compgen -W "check show" -- "$cur") $(_coffer_policy_files "$cur"))
    elif [ "$cmd" = key ]; then
        COMPREPLY=($(compgen -W "list add remove passwd" -- "$cur"))
    elif [ "$cmd" = mount ]; then
        COMPREPLY=($(compgen -d -- "$cur"))
    fi
}
complete -F _coffer coffer
