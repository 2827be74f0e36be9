{{/* Names, labels and the image reference shared by every template. */}}

{{- define "tmo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "tmo.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The collector's objects: the full name with a suffix, kept within 63 characters. */}}
{{- define "tmo.collectorName" -}}
{{- printf "%s-collector" (include "tmo.fullname" . | trunc 53 | trimSuffix "-") -}}
{{- end -}}

{{- define "tmo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "tmo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: traffic-mirror-operator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component ("operator" or "collector"); never change after install. */}}
{{- define "tmo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "tmo.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tmo.operatorServiceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- default (include "tmo.fullname" .) .Values.operator.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tmo.collectorServiceAccountName" -}}
{{- if .Values.collector.serviceAccount.create -}}
{{- default (include "tmo.collectorName" .) .Values.collector.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.collector.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "tmo.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Names fixed by the operator's code (src/controller/reconcile.ts, src/controller/runtime.ts). */}}
{{- define "tmo.vniMapConfigMap" -}}traffic-mirror-vni-map{{- end -}}
{{- define "tmo.leaseName" -}}traffic-mirror-operator{{- end -}}

{{/* The restricted container securityContext (Pod Security Standards "restricted"). */}}
{{- define "tmo.restrictedContainerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
The release namespace's enforced Pod Security level ("" when unlabelled or not yet made). lookup
answers only when Helm talks to a cluster (install, upgrade); helm template and --dry-run=client
get nothing. With --create-namespace Helm renders before it makes the namespace, so a first install
sees none (docs/adr/0010-pod-security-of-the-release-namespace.md).
*/}}
{{- define "tmo.namespaceEnforce" -}}
{{- $ns := lookup "v1" "Namespace" "" .Release.Namespace | default dict -}}
{{- dig "metadata" "labels" "pod-security.kubernetes.io/enforce" "" $ns -}}
{{- end -}}

{{/* Fails the install when the namespace enforces a level that refuses the collector's pods. */}}
{{- define "tmo.checkCollectorPodSecurity" -}}
{{- $level := include "tmo.namespaceEnforce" . -}}
{{- if and .Values.collector.podSecurityCheck $level (ne $level "privileged") -}}
{{- fail (printf "namespace %s enforces Pod Security %q (label pod-security.kubernetes.io/enforce), which refuses the collector's pods: they need \"privileged\" (host network, host port %v, hostPath). Label the namespace: kubectl label namespace %s pod-security.kubernetes.io/enforce=privileged --overwrite. Or install into another namespace, or set collector.enabled=false (no in-cluster collector), or collector.podSecurityCheck=false if the cluster's PodSecurity admission configuration exempts this namespace." .Release.Namespace $level .Values.collector.port .Release.Namespace) -}}
{{- end -}}
{{- end -}}
