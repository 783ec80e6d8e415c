# bash completion for payguard: areas, verbs and options come from the
# program's own --help text at completion time, so they match the binary.
_payguard()
{
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD - 1]}
	local pg=${COMP_WORDS[0]} i=1 area verb words

	# global options before the area
	while ((i < COMP_CWORD)) && [[ ${COMP_WORDS[i]} == -* ]]; do
		[[ ${COMP_WORDS[i]} == --log-level ]] && ((i++))
		((i++))
	done
	case $prev in
	--log-level)
		COMPREPLY=($(compgen -W "error warn info debug trace" -- "$cur"))
		return
		;;
	--dialect)
		COMPREPLY=($(compgen -W "binary ascii iso93 iso93-binary jpos-iso87b npm-iso8583" -- "$cur")
			$(compgen -f -- "$cur"))
		return
		;;
	--framing)
		COMPREPLY=($(compgen -W "bin2 bcd2 ascii4 bin4 none bin2+tpdu bcd2+tpdu ascii4+tpdu bin4+tpdu" -- "$cur"))
		return
		;;
	--format)
		COMPREPLY=($(compgen -W "auto osv debian-tracker" -- "$cur"))
		return
		;;
	esac
	if ((COMP_CWORD == i)); then
		if [[ $cur == -* ]]; then
			words="--log-level --version --help"
		else
			words=$("$pg" --help 2>/dev/null | awk '/^Areas:/{a=1;next} a && /^  [a-z]/{print $1}')
		fi
		COMPREPLY=($(compgen -W "$words" -- "$cur"))
		return
	fi
	area=${COMP_WORDS[i]}
	if ((COMP_CWORD == i + 1)); then
		words=$("$pg" "$area" --help 2>/dev/null | awk '/^Verbs:/{x=1;next} x && /^  [a-z]/{print $1}')
		COMPREPLY=($(compgen -W "$words --help" -- "$cur"))
		return
	fi
	verb=${COMP_WORDS[i + 1]}
	if [[ $cur == -* ]]; then
		words=$("$pg" "$area" "$verb" --help 2>/dev/null | grep -oE -- '(^|[[ ])--[a-z][a-z0-9-]*' |
			sed 's/^[[ ]//' | sort -u)
		COMPREPLY=($(compgen -W "$words --help" -- "$cur"))
		return
	fi
	COMPREPLY=($(compgen -f -- "$cur"))
}
complete -o filenames -F _payguard payguard
