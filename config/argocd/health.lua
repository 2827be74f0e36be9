-- Argo CD health check for TrafficMirrorPolicy and TrafficMirrorTarget
-- (trafficmirror.twtech.io/v1alpha1). One script for both kinds: both report a root `Ready`
-- condition derived by the operator, with the reason of the first condition that is not True.
-- Argo CD gives the object as the global `obj` and wants a table {status, message} back.
-- Reasons are those of src/api/reasons.ts.

local hs = { status = "Progressing", message = "Waiting for the operator to report status" }

-- Reasons that clear by themselves: the operator is still working, or waits on something that is
-- on its way (pods starting, a target being set up, AWS calls being retried, a deletion).
local progressing = {
  Deleting = true,
  Pending = true,
  Programming = true,
  Retrying = true,
  TargetNotReady = true,
}

-- Reasons that mean "intentionally not acting": Argo CD shows these as Suspended, not as errors.
local suspended = {
  Suspended = true,
  DryRun = true,
}

-- Reasons that mean "done as asked": a time-boxed policy whose time is up has removed its sessions,
-- which is what its owner wanted, so Argo CD shows it Healthy (the message says it ended).
local done = {
  Expired = true,
}

-- Everything else that makes Ready False needs a person: a wrong spec or reference, a namespace
-- or node source the target does not allow, sources that cannot be mirrored, or AWS limits
-- (EniFull, TargetFull, FilterTooLarge). Unknown reasons count as errors too, so a new reason
-- never hides a problem behind an endless Progressing.

local function generation()
  if obj.metadata ~= nil and obj.metadata.generation ~= nil then
    return tonumber(obj.metadata.generation)
  end
  return nil
end

local function readyCondition(status)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == "Ready" then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or "Unknown"
  if c.message ~= nil and c.message ~= "" then
    text = text .. ": " .. c.message
  end
  return text
end

local function assess()
  local status = obj.status
  if status == nil then
    return hs
  end
  local gen = generation()
  if gen ~= nil and status.observedGeneration ~= nil and tonumber(status.observedGeneration) < gen then
    hs.message = "Waiting for the operator to observe generation " .. tostring(gen)
    return hs
  end
  local ready = readyCondition(status)
  if ready == nil then
    return hs
  end
  if gen ~= nil and ready.observedGeneration ~= nil and tonumber(ready.observedGeneration) < gen then
    hs.message = "Waiting for the operator to observe generation " .. tostring(gen)
    return hs
  end
  hs.message = describe(ready)
  if ready.status == "True" or (ready.status == "False" and done[ready.reason]) then
    hs.status = "Healthy"
  elseif suspended[ready.reason] then
    hs.status = "Suspended"
  elseif ready.status == "Unknown" or progressing[ready.reason] then
    hs.status = "Progressing"
  else
    hs.status = "Degraded"
  end
  return hs
end

return assess()
