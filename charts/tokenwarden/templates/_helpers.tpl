{{/* Labels of every object: the manifests' own, plus Helm's. */}}
{{- define "tokenwarden.labels" -}}
app.kubernetes.io/name: tokenwarden
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* The operator's username at the API server (the fence matches it). */}}
{{- define "tokenwarden.username" -}}
system:serviceaccount:{{ .Release.Namespace }}:tokenwarden
{{- end }}

{{/* A file the generator copied from access/ or manifests/, with Helm's labels added and the namespace set. */}}
{{- define "tokenwarden.copied" -}}
{{- $ctx := index . 0 }}{{ $file := index . 1 }}
{{- $text := $ctx.Files.Get $file }}
{{- $text = replace "system:serviceaccount:tokenwarden-system:tokenwarden" (include "tokenwarden.username" $ctx) $text }}
{{- $text = replace "namespace: tokenwarden-system" (printf "namespace: %s" $ctx.Release.Namespace) $text }}
{{- $text = replace "    app.kubernetes.io/name: tokenwarden\n" (printf "%s\n" (include "tokenwarden.labels" $ctx | indent 4)) $text }}
{{- $text }}
{{- end }}
