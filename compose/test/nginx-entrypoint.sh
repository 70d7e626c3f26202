#!/bin/sh
# The official nginx image's template step, reduced: each /etc/nginx/templates/X.template becomes
# /etc/nginx/conf.d/X with the environment's ${PW_*} filled in (nginx's own $variables untouched).
set -eu
vars=$(env | sed -n 's/^\(PW_[A-Za-z0-9_]*\)=.*/${\1}/p' | tr '\n' ' ')
for t in /etc/nginx/templates/*.template; do
    [ -e "$t" ] || continue
    envsubst "$vars" <"$t" >"/etc/nginx/conf.d/$(basename "$t" .template)"
done
exec "$@"
