#!/usr/bin/env bash
# The bash completion (packaging/bash-completion/fulcrum) offers exactly the
# commands and options that the binary's own help lists, for the daemon and
# for `fulcrum ctl`, so that neither can change without the other.
#
# bash-completion's helpers are replaced by small stand-ins, so the check
# needs no bash-completion package and no running daemon (the pool and
# backend names, which need one, are not checked here).
#
# usage: completion_check.sh FULCRUM COMPLETION_FILE
set -euo pipefail

fulcrum=$1
completion=$2

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

# The stand-ins: what _init_completion sets, a marker for file names.
# shellcheck disable=SC2034 # the completion reads them
_init_completion() {
    words=("${COMP_WORDS[@]}")
    cword=$COMP_CWORD
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD - 1]}
}
_filedir() { COMPREPLY=("<files>"); }
__ltrim_colon_completions() { :; }

# shellcheck source=/dev/null
source "$completion"
complete -p fulcrum >/dev/null || fail "$completion does not register a completion for fulcrum"

# The completions of a command line (a trailing space: a new word), sorted, one a line.
complete_line() {
    read -ra COMP_WORDS <<<"$1"
    [[ $1 == *" " ]] && COMP_WORDS+=("")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _fulcrum
    printf '%s\n' "${COMPREPLY[@]}" | sort
}

# The options of help text: on lines that start with "-" after blanks, every
# word up to the first that is not an option.
help_options() {
    awk '$1 ~ /^-/ { for (i = 1; i <= NF; i++) { t = $i; sub(/,$/, "", t);
                                                 if (t !~ /^-/) break; print t } }' | sort
}

same() { # what, wanted, got
    [ "$2" = "$3" ] || fail "$1: the help lists
$2
but the completion offers
$3"
}

ctl_help=$("$fulcrum" ctl --help)
same "fulcrum ctl commands" \
    "$(awk '/^Commands:/ { on = 1; next } /^$/ { on = 0 } on && /^  [a-z]/ { print $1 }' \
        <<<"$ctl_help" | sort)" \
    "$(complete_line "fulcrum ctl ")"
same "fulcrum ctl options" "$(help_options <<<"$ctl_help")" "$(complete_line "fulcrum ctl -")"
same "fulcrum options" "$("$fulcrum" --help | help_options)" "$(complete_line "fulcrum -")"
same "fulcrum's first word" "$(printf 'ctl\nplugin-check')" "$(complete_line "fulcrum ")"
same "fulcrum plugin-check options" "$("$fulcrum" plugin-check --help | help_options)" \
    "$(complete_line "fulcrum plugin-check -")"
same "the kinds after --kind" \
    "$("$fulcrum" plugin-check --help | sed -n 's/.*--kind KIND .*: \(.*\)$/\1/p' |
        tr -d ' ' | tr ',' '\n' | sort)" \
    "$(complete_line "fulcrum plugin-check --kind ")"
same "a plugin file" "<files>" "$(complete_line "fulcrum plugin-check --kind health ")"
same "a file after -c" "<files>" "$(complete_line "fulcrum ctl -c ")"
same "a file after --token-file" "<files>" "$(complete_line "fulcrum ctl status --token-file ")"
same "a command after options" "drain" "$(complete_line "fulcrum ctl -a 127.0.0.1:1 --json dr")"
echo "PASS: the completion offers the commands and options of fulcrum --help, fulcrum ctl --help and fulcrum plugin-check --help"
