-- Orthanc routing for CXR Reason Gateway: every chest radiograph (CR or DX whose body part,
-- or failing that whose descriptions, say chest) goes to the gateway as it arrives; the
-- gateway picks the frontal view of each study and sends its research-draft SR back here.
-- SRs, other modalities and anything the gateway itself sent are never routed.

local CHEST_PARTS = {CHEST = true, THORAX = true, LUNG = true, ["PORTABLE CHEST"] = true}

local function upper(value)
  return string.upper(value or '')
end

function OnStoredInstance(instanceId, tags, metadata, origin)
  local modality = upper(tags['Modality'])
  if modality ~= 'CR' and modality ~= 'DX' then
    return
  end
  if origin and origin['RemoteAet'] == 'CXRGATEWAY' then
    return
  end
  local part = upper(tags['BodyPartExamined'])
  local words = upper(tags['StudyDescription']) .. ' ' .. upper(tags['SeriesDescription'])
      .. ' ' .. upper(tags['ProtocolName'])
  if CHEST_PARTS[part] or (part == '' and (string.find(words, 'CHEST') or
                                           string.find(words, 'THORAX'))) then
    SendToModality(instanceId, 'gateway')
  end
end
